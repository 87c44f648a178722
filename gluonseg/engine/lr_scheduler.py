"""Per-iteration learning-rate schedules: linear warmup, then poly, cosine or step decay.

The learning rate is a pure function of the number of updates already done, so a resumed run
gets exactly the learning rate it would have had: the checkpoint only needs the iteration
(:meth:`SegmentationLRScheduler.state_dict` also records the schedule's settings so that a resume
with different settings is detected instead of silently bending the curve).
"""
import math

import mxnet as mx

__all__ = ['SegmentationLRScheduler', 'LR_MODES']

LR_MODES = ('poly', 'cosine', 'step')


class SegmentationLRScheduler(mx.lr_scheduler.LRScheduler):
    """Linear warmup followed by poly (GluonCV's recipe), cosine or step decay, per iteration.

    With ``t`` the number of updates already done (0 for the first update), ``W`` the warmup
    iterations, ``T = t - W`` and ``N = total_iters - W``:

    - warmup (``t < W``): ``warmup_start_lr + (base_lr - warmup_start_lr) * t / W``;
    - ``'poly'``: ``final_lr + (base_lr - final_lr) * (1 - T / N) ** power``;
    - ``'cosine'``: ``final_lr + (base_lr - final_lr) * (1 + cos(pi * T / N)) / 2``;
    - ``'step'``: ``base_lr * step_factor ** k`` with ``k`` the number of ``step_iters``
      milestones (absolute iterations) that are ``<= t``.

    For ``t >= total_iters`` the value at ``total_iters`` is returned (``final_lr`` for poly and
    cosine).

    Parameters
    ----------
    base_lr : float
        Learning rate at the end of the warmup.
    total_iters : int
        Iterations of the whole run, warmup included (epochs x iterations per epoch).
    mode : {'poly', 'cosine', 'step'}, default 'poly'
    warmup_iters : int, default 0
    warmup_start_lr : float, default 0.0
        Learning rate of the first warmup iteration.
    power : float, default 0.9
        Exponent of the poly decay.
    final_lr : float, default 0.0
        Learning rate reached at ``total_iters`` by poly and cosine.
    step_iters : sequence of int, default ()
        Milestones of the step decay.
    step_factor : float, default 0.1
        Multiplier applied at each milestone.

    Notes
    -----
    It can be given to an MXNet optimizer (``lr_scheduler=``), which calls it with its own
    ``num_update`` (1 for the first update). :class:`gluonseg.engine.SegmentationTrainer`
    instead calls it with the 0-based iteration and sets the rate itself, which keeps the value
    independent of the optimizer's per-parameter update counters.
    """

    def __init__(self, base_lr, total_iters, mode='poly', warmup_iters=0, warmup_start_lr=0.0,
                 power=0.9, final_lr=0.0, step_iters=(), step_factor=0.1):
        if mode not in LR_MODES:
            raise ValueError('Unknown LR mode %r; choose one of %s' % (mode, ', '.join(LR_MODES)))
        total_iters, warmup_iters = int(total_iters), int(warmup_iters)
        if total_iters < 1:
            raise ValueError('total_iters must be at least 1, got %d' % total_iters)
        if not 0 <= warmup_iters < total_iters:
            raise ValueError('warmup_iters must be in [0, total_iters=%d), got %d: the warmup '
                             'would take the whole run' % (total_iters, warmup_iters))
        if base_lr <= 0:
            raise ValueError('base_lr must be positive, got %r' % (base_lr,))
        super().__init__(base_lr=float(base_lr), warmup_steps=warmup_iters,
                         warmup_begin_lr=float(warmup_start_lr), warmup_mode='linear')
        self.mode = mode
        self.total_iters = total_iters
        self.power = float(power)
        self.final_lr = float(final_lr)
        self.step_iters = tuple(sorted(int(s) for s in step_iters))
        self.step_factor = float(step_factor)
        self.last_iter = 0  # the position: the last iteration asked for

    @classmethod
    def from_epochs(cls, base_lr, epochs, iters_per_epoch, warmup_epochs=0, step_epochs=(),
                    **kwargs):
        """Build from epoch counts (``warmup_epochs`` may be fractional)."""
        return cls(base_lr, epochs * iters_per_epoch,
                   warmup_iters=int(round(warmup_epochs * iters_per_epoch)),
                   step_iters=[int(round(e * iters_per_epoch)) for e in step_epochs], **kwargs)

    def __call__(self, num_update):
        t = min(int(num_update), self.total_iters)
        self.last_iter = t
        if t < self.warmup_steps:
            return self.get_warmup_lr(t)
        if self.mode == 'step':
            return self.base_lr * self.step_factor ** sum(1 for s in self.step_iters if s <= t)
        progress = (t - self.warmup_steps) / float(self.total_iters - self.warmup_steps)
        if self.mode == 'poly':
            factor = (1.0 - progress) ** self.power
        else:
            factor = (1.0 + math.cos(math.pi * progress)) / 2.0
        return self.final_lr + (self.base_lr - self.final_lr) * factor

    def settings(self):
        """The arguments that define the curve (JSON-serialisable)."""
        return {'mode': self.mode, 'base_lr': self.base_lr, 'total_iters': self.total_iters,
                'warmup_iters': self.warmup_steps, 'warmup_start_lr': self.warmup_begin_lr,
                'power': self.power, 'final_lr': self.final_lr,
                'step_iters': list(self.step_iters), 'step_factor': self.step_factor}

    def state_dict(self):
        """Settings plus the position (``last_iter``), for a checkpoint."""
        state = self.settings()
        state['last_iter'] = self.last_iter
        return state

    def load_state_dict(self, state, strict=True):
        """Restore the position from :meth:`state_dict`.

        Parameters
        ----------
        state : dict
        strict : bool, default True
            Raise if the saved settings differ from this scheduler's: resuming would then
            continue on a different curve than the interrupted run.
        """
        if strict:
            saved = {k: state[k] for k in self.settings() if k in state}
            current = self.settings()
            differ = ['%s: checkpoint %r, now %r' % (k, saved[k], current[k])
                      for k in saved if _differs(saved[k], current[k])]
            if differ:
                raise ValueError('The learning-rate schedule differs from the checkpoint\'s (%s); '
                                 'resume with the same epochs, lr, warmup and batch size, or '
                                 'start a new run from these weights instead'
                                 % '; '.join(differ))
        self.last_iter = int(state.get('last_iter', 0))
        return self

    def __repr__(self):
        return ('SegmentationLRScheduler(mode=%r, base_lr=%g, total_iters=%d, warmup_iters=%d)'
                % (self.mode, self.base_lr, self.total_iters, self.warmup_steps))


def _differs(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return not math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
    return list(a) != list(b) if isinstance(a, (list, tuple)) else a != b
