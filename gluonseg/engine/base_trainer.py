"""What every training loop of the engine shares: the run's files, checkpoints and exact
resume, the epoch loop with its progress bar and logs, the per-iteration learning rate and
seeding, the guards against non-finite numbers and the lock on the run folder.

:class:`~gluonseg.engine.SegmentationTrainer` and
:class:`~gluonseg.engine.InstanceTrainer` derive from :class:`BaseTrainer` and add what
differs: how a batch becomes a loss (``_forward_backward``), the validation (``validate``,
which records its result with ``_record_validation``) and the name of the metric that picks
``best.ckpt`` (``BEST_METRIC``).

What makes a resumed run continue exactly where the killed one was:

- batch ``b`` of epoch ``e`` is drawn from ``(seed, e, b)`` (:mod:`gluonseg.engine.data`), so the
  resumed run skips the consumed batches of the epoch and sees the same next ones;
- the learning rate is a function of the iteration (:mod:`gluonseg.engine.lr_scheduler`);
- MXNet's generators (dropout) and NumPy's global one (e.g. Mask R-CNN's anchor and RoI
  sampling) are reseeded from ``(seed, iteration)`` before every iteration, because MXNet
  cannot save its generators' state;
- weights, BatchNorm statistics, momentum, best score and the python/numpy RNG states are in
  the checkpoint (:mod:`gluonseg.engine.checkpoint`).

What keeps NaNs out of what a run writes (:mod:`gluonseg.engine.guards`):

- an update whose loss or gradients are not all finite is skipped, with a warning; after
  ``config.max_nonfinite_steps`` such updates in a row the run stops with :class:`NonFiniteError`;
- weights that an update made non-finite give non-finite gradients from the next step on, so
  the run stops there too, and says so;
- a checkpoint is never written with non-finite weights or optimizer states
  (:func:`~gluonseg.engine.checkpoint.save_checkpoint` refuses), so ``latest.ckpt`` and
  ``best.ckpt`` only ever hold finite ones;
- ``config.check_inputs`` checks every training sample
  (:class:`~gluonseg.engine.guards.FiniteInputs`).

The run folder and its files (log, ``metrics.jsonl``, ``curves.png``) are a
:class:`~gluonseg.engine.run_dir.RunDirectory`, held by one run at a time.

Several machines (:mod:`gluonseg.engine.distributed`): iterations and the learning rate count
global batches, only worker 0 validates and writes the run's files, and every worker resumes
from the same checkpoint.
"""
import dataclasses
import logging
import math
import os
import time
from typing import Optional

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.contrib import amp
from tqdm import tqdm

from ..utils.atomic import atomic_copy
from ..utils.mxnet_compat import amp_loss_scaler, loss_scaler_state, set_loss_scaler_state
from .checkpoint import (CheckpointError, capture_rng_state, load_checkpoint, restore_rng_state,
                         save_checkpoint)
from .data import EpochBatchSampler
from .distributed import WorkerSums, create_kvstore, share_initial_weights
from .guards import (FiniteInputs, NonFiniteError, all_finite, first_names, gradient_arrays,
                     nonfinite_names, parameter_arrays)
from .mixed_precision import check_amp
from .run_dir import BEST_CHECKPOINT, LATEST_CHECKPOINT, METRICS_FILE, RunDirectory

__all__ = ['BaseTrainConfig', 'BaseTrainer', 'NonFiniteError', 'NonFiniteLossError',
           'iteration_seed', 'disable_bias_bn_weight_decay']

logger = logging.getLogger('gluonseg.train')


#: The name this error had when only the loss was checked.
NonFiniteLossError = NonFiniteError


@dataclasses.dataclass
class BaseTrainConfig:
    """Settings every training run has (JSON-serialisable; saved in every checkpoint).

    Parameters
    ----------
    epochs : int
    batch_size : int
        Images per device.
    lr : float
        Base learning rate.
    momentum, wd : float
        SGD momentum and weight decay.
    val_interval : int
        Validate every this many epochs (and always after the last one); 0: never.
    checkpoint_interval : int
        Also write ``latest.ckpt`` every this many iterations inside an epoch (0: only at the
        end of each epoch), so a killed run loses at most that much work.
    seed : int
    num_workers : int
        DataLoader worker processes (0: load in the training process).
    hybridize : bool
    progress : bool
        Show a tqdm bar.
    log_interval : int
        Write a line to the log file every this many iterations.
    kvstore : str or None
        One of :data:`~gluonseg.engine.distributed.KVSTORES`; None: ``'device'`` with several
        devices, none with one.
    amp : {None, 'float16', 'bfloat16'}
        Mixed precision (:mod:`gluonseg.engine.mixed_precision`; switch it on with
        ``init_amp`` before building the network). float16 scales the loss dynamically.
    accumulate : int
        Sum the gradients of this many batches of ``batch_size`` per device before each
        update: an update (an iteration, for the schedule) then sees ``accumulate`` times
        the images, with the memory of one batch.
    max_nonfinite_steps : int
        Stop after this many updates in a row were skipped because their loss or gradients
        were NaN or infinite.
    check_inputs : bool
        Check every training sample for NaN and infinite values as it is read, and name the
        first bad one (costs a pass over each sample).
    """

    epochs: int = 10
    batch_size: int = 4
    lr: float = 0.01
    momentum: float = 0.9
    wd: float = 1e-4
    val_interval: int = 1
    checkpoint_interval: int = 0
    seed: int = 0
    num_workers: int = 0
    hybridize: bool = True
    progress: bool = True
    log_interval: int = 20
    kvstore: Optional[str] = None
    amp: Optional[str] = None
    accumulate: int = 1
    max_nonfinite_steps: int = 3
    check_inputs: bool = False

    def to_dict(self):
        return dataclasses.asdict(self)


def iteration_seed(seed, iteration, rank=0):
    """The MXNet (and NumPy) seed used before iteration ``iteration`` of a run seeded with
    ``seed``, on worker ``rank`` (workers draw different dropout masks)."""
    return (int(seed) * 1000003 + int(iteration) + int(rank) * 7777777) % (2 ** 31 - 1)


def disable_bias_bn_weight_decay(net):
    """Set ``wd_mult = 0`` on biases and normalization gammas/betas; returns their names."""
    names = []
    for name, param in net.collect_params().items():
        if name.endswith(('bias', 'gamma', 'beta')):
            param.wd_mult = 0.0
            names.append(name)
    return names


class BaseTrainer(object):
    """The loop, files and resume of a training run; subclasses define the model's step and
    validation.

    A subclass calls ``BaseTrainer.__init__``, then sets ``self.lr_scheduler`` (a
    :class:`~gluonseg.engine.SegmentationLRScheduler` over ``self.total_iters``) and
    ``self.trainer`` (from :meth:`_make_trainer`), and implements:

    - ``_forward_backward(batches) -> (loss, terms)``: forward and backward of the batches of
      one update (``config.accumulate`` of them) on ``self.ctx``; ``loss`` is the sum of the
      losses of the devices and batches (a python float) and ``terms`` a dict of named parts
      of it (summed the same way), or empty;
    - ``validate() -> dict``: evaluate, then return ``self._record_validation(record)``;
    - ``_describe() -> str``: the settings for the first line of the log;
    - ``_task_meta() -> dict``: what checkpoints of this task hold besides the common state.

    Parameters
    ----------
    net : Block
        Initialized.
    train_data : Dataset
        Indexed by the ``(epoch, index)`` keys of :class:`EpochBatchSampler`.
    val_dataset : Dataset or None
        What ``validate()`` evaluates; without it the run never validates.
    ctx : Context or list of Context
    config : BaseTrainConfig
    save_dir : str or None
    model_info, run_args : dict or None
        Stored in checkpoints.
    batchify_fn : callable, optional
        Of the training DataLoader.
    """

    #: Name of the validation metric that picks ``best.ckpt`` (higher is better).
    BEST_METRIC = None
    #: Fields of the validation records drawn in ``curves.png``.
    PLOT_METRICS = ()
    #: ``meta['task']`` of this trainer's checkpoints; resume refuses another task's.
    TASK = None
    #: Last sentence of the message of :class:`NonFiniteLossError`.
    NONFINITE_ADVICE = 'Lower the learning rate or add warmup'
    #: True: each device's loss is a mean over its own images, and the update averages the
    #: devices (of all workers). False: each device's loss is already its share of one mean
    #: over the whole batch, and the update sums them.
    DEVICE_MEAN_LOSS = False

    def __init__(self, net, train_data, val_dataset, ctx, config, save_dir=None,
                 model_info=None, run_args=None, batchify_fn=None):
        self.net = net
        self.config = config
        self.ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
        self.save_dir = save_dir
        self.train_data = FiniteInputs(train_data) if config.check_inputs else train_data
        self.val_dataset = val_dataset
        self.batchify_fn = batchify_fn
        self.model_info = dict(model_info or {})
        self.run_args = dict(run_args or {})
        check_amp(config.amp, self.ctx)
        if int(config.accumulate) < 1:
            raise ValueError('accumulate must be at least 1 (batches per update), got %r'
                             % (config.accumulate,))
        self.kvstore, self.rank, self.num_workers = create_kvstore(config.kvstore, self.ctx)
        self._worker_sums = None  # made with the gluon.Trainer, whose keys come first
        # Images per update (iteration): per device x devices x workers x accumulated batches.
        self.total_batch_size = (config.batch_size * len(self.ctx) * self.num_workers *
                                 config.accumulate)
        self.iters_per_epoch = len(train_data) // self.total_batch_size
        if self.iters_per_epoch < 1:
            raise ValueError('The training set has %d samples, fewer than one update of %d '
                             '(%d per device x %d devices x %d workers x %d accumulated '
                             'batches)' % (len(train_data), self.total_batch_size,
                                           config.batch_size, len(self.ctx),
                                           self.num_workers, config.accumulate))
        self.total_iters = config.epochs * self.iters_per_epoch
        # The summed gradients (and the summed losses, for the logs) are divided by this.
        self.loss_divisor = (len(self.ctx) * self.num_workers * config.accumulate
                             if self.DEVICE_MEAN_LOSS else 1)
        self._accumulated = []  # the parameters whose gradients add up between updates
        self.lr_scheduler = None
        self.trainer = None
        self._loss_scaler = None  # float16 AMP's (mxnet.contrib.amp.LossScaler)
        # What the set-up changed from the settings; logged when fit() starts (with the file).
        self.setup_warnings = []

        self.iteration = 0
        self.best = {self.BEST_METRIC: None, 'epoch': None, 'iteration': None}
        self.last_metrics = None
        self.last_loss = None
        self.train_seconds = 0.0
        self.skipped_updates = 0
        self._nonfinite_in_a_row = 0
        self._running_stats = None  # (BatchNorm statistic, its copy) pairs, made at first use
        self._epoch_loss = [0.0, 0]
        self._run_dir = None

    def _make_trainer(self, params, optimizer_params):
        """The ``gluon.Trainer`` (SGD) of ``params``.

        update_on_kvstore=False: gradients are summed across devices (and workers), then
        every device applies the same update; the optimizer states then save and load the
        same way for one device or many, one worker or many.
        """
        # gluon.Trainer numbers the parameters' kvstore keys from 0; _allreduce uses the next.
        self._worker_sums = WorkerSums(self.kvstore, self.num_workers, len(list(params.values())))
        if self.config.accumulate > 1:
            # Each backward adds to the gradients; they are zeroed after each update.
            self._accumulated = [p for p in params.values() if p.grad_req != 'null']
            for param in self._accumulated:
                param.grad_req = 'add'
        # A list in the network's own (structural) order: given a dict, gluon.Trainer sorts
        # by name, and names carry global counters (dense9 < dense10 flips between two builds
        # in one process), which would hand a resumed run's momentum to the wrong arrays.
        trainer = gluon.Trainer(list(params.values()), 'sgd', optimizer_params,
                                kvstore=self.kvstore, update_on_kvstore=False)
        if self.config.amp == 'float16':
            # bfloat16 has float32's range: only float16 needs the loss scaled.
            amp.init_trainer(trainer)
            self._loss_scaler = amp_loss_scaler(trainer)
        return trainer

    def _allreduce(self, values):
        """The sums over the workers of ``values`` (python numbers); ``values`` itself when
        there is one worker (:class:`~gluonseg.engine.distributed.WorkerSums`)."""
        if self.num_workers == 1:
            return list(values)
        return self._worker_sums(values)

    # ------------------------------------------------------------------------------ paths
    def _path(self, name):
        return os.path.join(self.save_dir, name) if self.save_dir else None

    @property
    def writes_files(self):
        """Whether this process writes the run's files (a save_dir, and worker 0)."""
        return bool(self.save_dir) and self.rank == 0

    @property
    def run_dir(self):
        """The :class:`RunDirectory` of ``save_dir`` (None without one; follows changes of
        ``save_dir``)."""
        if not self.save_dir:
            return None
        if self._run_dir is None or self._run_dir.path != self.save_dir:
            if self._run_dir is not None:
                self._run_dir.close_log()
                self._run_dir.release()
            self._run_dir = RunDirectory(self.save_dir)
        return self._run_dir

    @property
    def latest_path(self):
        return self._path(LATEST_CHECKPOINT)

    @property
    def best_path(self):
        return self._path(BEST_CHECKPOINT)

    @property
    def epoch(self):
        """The epoch in progress (0-based), i.e. completed epochs at an epoch boundary."""
        return self.iteration // self.iters_per_epoch

    # ------------------------------------------------------------------------- checkpoints
    def _meta(self):
        meta = {'task': self.TASK, 'epoch': self.epoch, 'iteration': self.iteration,
                'iters_per_epoch': self.iters_per_epoch,
                'total_batch_size': self.total_batch_size, 'num_devices': len(self.ctx),
                'num_workers': self.num_workers, 'train_samples': len(self.train_data),
                'lr_scheduler': self.lr_scheduler.state_dict(), 'best': dict(self.best),
                'last_metrics': self.last_metrics, 'train_seconds': self.train_seconds,
                'epoch_loss': list(self._epoch_loss), 'skipped_updates': self.skipped_updates,
                'loss_scaler': self._loss_scaler_state(),
                'rng': capture_rng_state(self.config.seed), 'model': self.model_info,
                'config': self.config.to_dict(), 'args': self.run_args}
        meta.update(self._task_meta())
        return meta

    def save(self):
        """Write ``latest.ckpt`` (and ``best.ckpt`` when the last validation is the best);
        only worker 0 writes."""
        if not self.writes_files:
            return None
        self._claim_save_dir()
        bad = self._nonfinite_weights()
        if bad:  # e.g. BatchNorm's running variance overflowed while the gradients did not
            raise NonFiniteError(
                'At epoch %d, iteration %d the weights are not all finite (%s): training '
                'stopped without writing them; %s. %s'
                % (self.epoch + 1, self.iteration, first_names(bad),
                   self._last_good_checkpoint(), self.NONFINITE_ADVICE))
        path = save_checkpoint(self.latest_path, self.net, self.trainer, self._meta())
        if self.last_metrics is not None and self.best['iteration'] == self.iteration:
            atomic_copy(path, self.best_path)
        return path

    def resume(self, path=None):
        """Continue from a checkpoint (default ``save_dir/latest.ckpt``).

        Restores weights, optimizer states, iteration, scheduler position, best score and RNG
        states, checks that the run's batch layout and schedule are the same, and drops
        metric records written after the checkpoint. Returns the :class:`Checkpoint`.

        Refuses (:class:`~gluonseg.engine.CheckpointError`) optimizer states saved for other
        parameters or another order than this trainer's, and those of a checkpoint that did
        not record their order (:meth:`~gluonseg.engine.Checkpoint.check_trainer`), before
        loading anything: the network keeps its weights.
        """
        path = path or self.latest_path
        if path is None:
            raise ValueError('resume() needs a checkpoint path or a save_dir')
        self._claim_save_dir()
        ckpt = load_checkpoint(path)
        meta = ckpt.meta
        # Checkpoints of semantic runs written before the task was recorded have none.
        task = meta.get('task', 'semantic')
        if task != self.TASK:
            raise ValueError('%s is a %s training checkpoint, not a %s one'
                             % (path, task, self.TASK))
        if meta['iters_per_epoch'] != self.iters_per_epoch or \
                meta['total_batch_size'] != self.total_batch_size:
            raise ValueError(
                'Cannot resume %s: it was written with %d iterations per epoch of %d images '
                '(%d training samples), this run has %d of %d (%d samples). Use the same '
                'dataset and total batch size (per-device batch x devices x workers)'
                % (path, meta['iters_per_epoch'], meta['total_batch_size'],
                   meta['train_samples'], self.iters_per_epoch, self.total_batch_size,
                   len(self.train_data)))
        # Refuse optimizer states of another layout before anything is loaded: a caller that
        # catches the error keeps its network and scheduler as they were.
        ckpt.check_trainer(self.trainer, self.net)
        bad = nonfinite_names(ckpt.weights())
        if bad:  # written before checkpoints were checked
            raise CheckpointError('%s holds non-finite weights (%s): it cannot be resumed; '
                                  'resume an earlier checkpoint or start again'
                                  % (path, first_names(bad)))
        self.lr_scheduler.load_state_dict(meta['lr_scheduler'])
        ckpt.load_into(self.net, ctx=self.ctx)
        ckpt.restore_trainer(self.trainer, self.net)
        self.iteration = int(meta['iteration'])
        self.best = dict(meta['best'])
        self.last_metrics = meta.get('last_metrics')
        self.train_seconds = float(meta.get('train_seconds', 0.0))
        self._epoch_loss = list(meta.get('epoch_loss', [0.0, 0]))
        self.skipped_updates = int(meta.get('skipped_updates', 0))
        if self._loss_scaler is not None and meta.get('loss_scaler'):
            set_loss_scaler_state(self._loss_scaler, meta['loss_scaler'])
        restore_rng_state(meta['rng'])
        self._truncate_metrics_file(self.iteration)
        logger.info('Resumed from %s at iteration %d/%d (epoch %d, batch %d; best %s %s)',
                    path, self.iteration, self.total_iters, self.epoch + 1,
                    self.iteration - self.epoch * self.iters_per_epoch, self.BEST_METRIC,
                    _fmt(self.best[self.BEST_METRIC]))
        return ckpt

    def _loss_scaler_state(self):
        """float16 AMP's dynamic loss scale (None without it): a resumed run goes on with it."""
        return None if self._loss_scaler is None else loss_scaler_state(self._loss_scaler)

    def _truncate_metrics_file(self, iteration):
        """Drop metric records of iterations after ``iteration``: written after the
        checkpoint we resume from, they would be repeated; written by an earlier run in the
        same folder, when this one starts at iteration 0, they are not this run's. Returns
        the number of records dropped."""
        if not self.writes_files:
            return 0
        return self.run_dir.drop_records_after(METRICS_FILE, iteration)

    def _claim_save_dir(self):
        """Hold the run folder (worker 0 only): see :mod:`gluonseg.engine.run_dir`."""
        if self.writes_files:
            self.run_dir.claim()

    # ------------------------------------------------------------------------------ loop
    def fit(self, max_iterations=None):
        """Train until ``config.epochs`` are done (or ``max_iterations`` in all, for a run
        stopped on purpose; its ``latest.ckpt`` then resumes it).

        At the end it draws the loss and the validation metrics into ``curves.png``
        (:func:`gluonseg.utils.plot.plot_training_curves`; skipped with a warning without
        matplotlib).

        Returns
        -------
        dict
            ``iteration``, ``epoch``, ``metrics`` (the last validation's record), ``best``,
            ``latest_checkpoint``, ``best_checkpoint``, ``train_seconds``, ``last_loss``.

        Raises
        ------
        NonFiniteError
            After ``config.max_nonfinite_steps`` updates in a row with a NaN or infinite loss
            or gradients (each skipped), or when an update made the weights non-finite; no
            checkpoint of non-finite weights is written.
        RunDirectoryInUse
            When another live process trains in ``save_dir``.
        """
        end = self.total_iters if max_iterations is None else min(self.total_iters,
                                                                   int(max_iterations))
        self._claim_save_dir()
        if self.writes_files:
            self.run_dir.open_log()
        try:
            if self.iteration == 0:  # a new run: the folder's metrics.jsonl starts again
                dropped = self._truncate_metrics_file(0)
                if dropped:
                    logger.warning('Dropped the %d validation records of an earlier run from '
                                   '%s: this run starts at iteration 0 (use --resume, or '
                                   'resume(), to continue a run)', dropped,
                                   self._path(METRICS_FILE))
            if self.num_workers > 1:
                share_initial_weights(self.trainer)
            logger.info('Training %s', self._describe())
            for message in self.setup_warnings:
                logger.warning('%s', message)
            if self.config.amp:
                logger.info('Mixed precision (AMP): %s%s', self.config.amp,
                            ', loss scale %g' % self._loss_scaler.loss_scale
                            if self._loss_scaler is not None else '')
            if self.config.accumulate > 1:
                logger.info('Gradients of %d batches summed per update (iteration)',
                            self.config.accumulate)
            if self.num_workers > 1:
                logger.info('Worker %d of %d (kvstore %s): %d images per iteration here, %d in '
                            'all', self.rank, self.num_workers, self.config.kvstore,
                            self.total_batch_size // self.num_workers, self.total_batch_size)
            while self.iteration < end:
                self._run_epoch(end)
                if self.iteration % self.iters_per_epoch == 0:
                    self._end_epoch()
                else:  # stopped inside an epoch by max_iterations
                    self.save()
            if self.writes_files:
                self.run_dir.plot_curves(self.PLOT_METRICS)
            return {'iteration': self.iteration, 'epoch': self.epoch,
                    'metrics': self.last_metrics, 'best': dict(self.best),
                    'latest_checkpoint': self.latest_path,
                    'best_checkpoint': self.best_path
                    if self.best[self.BEST_METRIC] is not None else None,
                    'train_seconds': self.train_seconds, 'last_loss': self.last_loss}
        except NonFiniteError as err:
            logger.error('%s', err)
            raise
        finally:
            if self._run_dir is not None:
                self._run_dir.close_log()
                self._run_dir.release()

    def _run_epoch(self, end):
        epoch = self.epoch
        start_batch = self.iteration - epoch * self.iters_per_epoch
        if start_batch == 0:
            self._epoch_loss = [0.0, 0]
        sampler = EpochBatchSampler(len(self.train_data), self.total_batch_size,
                                    self.config.seed, epoch, start_batch,
                                    num_parts=self.num_workers, part=self.rank,
                                    micro_batches=self.config.accumulate)
        loader = gluon.data.DataLoader(self.train_data, batch_sampler=sampler,
                                       batchify_fn=self.batchify_fn,
                                       num_workers=self.config.num_workers)
        bar = None
        if self.config.progress:
            bar = tqdm(total=self.iters_per_epoch, initial=start_batch, dynamic_ncols=True,
                       desc='epoch %d/%d' % (epoch + 1, self.config.epochs), leave=False)
        tic = time.time()
        images = 0
        batches = []
        try:
            for batch in loader:
                batches.append(batch)
                if len(batches) < self.config.accumulate:
                    continue
                step_tic = time.time()
                loss, terms, lr = self._train_step(batches)
                self.train_seconds += time.time() - step_tic
                if math.isfinite(loss):  # a skipped update's NaN would hide the others'
                    self._epoch_loss[0] += loss
                    self._epoch_loss[1] += 1
                images += sum(b[0].shape[0] for b in batches)
                batches = []
                speed = images / max(time.time() - tic, 1e-9)
                mean_loss = self._epoch_loss[0] / max(self._epoch_loss[1], 1)
                if bar is not None:
                    bar.set_postfix(loss='%.4f' % mean_loss, lr='%.2e' % lr,
                                    speed='%.1f img/s' % speed, refresh=False)
                    bar.update(1)
                if self.config.log_interval and self.iteration % self.config.log_interval == 0:
                    detail = ('(%s), epoch mean %.4f' % (_terms(terms), mean_loss) if terms
                              else '(epoch mean %.4f)' % mean_loss)
                    logger.debug('epoch %d iteration %d/%d: loss %.4f %s, lr %.3e, %.1f img/s',
                                 epoch + 1, self.iteration, self.total_iters, loss, detail, lr,
                                 speed)
                at_epoch_end = self.iteration % self.iters_per_epoch == 0
                if self.config.checkpoint_interval and not at_epoch_end and \
                        self.iteration % self.config.checkpoint_interval == 0 and \
                        self.iteration < end:
                    self.save()
                if self.iteration >= end:
                    break
        finally:
            if bar is not None:
                bar.close()
        logger.info('epoch %d/%d: %d iterations, mean loss %.4f, lr %.3e, %.1f img/s',
                    epoch + 1, self.config.epochs, self.iteration - epoch * self.iters_per_epoch,
                    self._epoch_loss[0] / max(self._epoch_loss[1], 1),
                    self.lr_scheduler(max(self.iteration - 1, 0)),
                    images / max(time.time() - tic, 1e-9))

    def _train_step(self, batches):
        """One update from the list of (``accumulate``) ``batches``; returns (loss, terms, lr).

        An update whose loss or gradients are not all finite is skipped (BatchNorm's running
        statistics, which the forward pass already moved, are put back), and the run stops
        after ``config.max_nonfinite_steps`` of them in a row (:class:`NonFiniteError`).
        Weights that an update made non-finite give non-finite gradients at the next step;
        they are not checked after every update (a copy of every weight: 15% of a ResNet-18
        step on the CPU), but before every checkpoint write.
        """
        seed = iteration_seed(self.config.seed, self.iteration, self.rank)
        mx.random.seed(seed)
        np.random.seed(seed)
        self._save_running_stats()
        loss, terms = self._forward_backward(batches)
        # float16 AMP's loss scaler checks the gradients itself and skips overflowing updates.
        bad_devices = 0 if self._loss_scaler is not None else sum(
            not all_finite(gradient_arrays(self.net, ctx).values()) for ctx in self.ctx)
        # Summed over the workers, so that all of them skip or stop together.
        totals = self._allreduce([loss, bad_devices] + list(terms.values()))
        loss = totals[0] / self.loss_divisor
        terms = {name: value / self.loss_divisor for name, value in zip(terms, totals[2:])}
        lr = self.lr_scheduler(self.iteration)
        if not math.isfinite(loss) or totals[1]:
            self._skip_nonfinite_update(loss, terms, lr)
            return loss, terms, lr
        self._nonfinite_in_a_row = 0
        scaler = self._loss_scaler
        used_scale = scaler.loss_scale if scaler is not None else None  # by this backward
        self.trainer.set_learning_rate(lr)
        self.trainer.step(self.loss_divisor)
        for param in self._accumulated:
            param.zero_grad()
        # LossScaler.has_overflow (called by step) makes the pending scale the current one,
        # and on an overflow sets the pending one to half of it: MXNet applies a change one
        # update late.
        state = loss_scaler_state(scaler) if scaler is not None else None
        if state is not None and state['next_loss_scale'] < state['loss_scale']:
            self.skipped_updates += 1
            logger.warning('AMP: the gradients of iteration %d overflowed float16 with loss '
                           'scale %g: update skipped (%d so far); loss scale %g for the next '
                           'iteration, %g after it', self.iteration, used_scale,
                           self.skipped_updates, state['loss_scale'], state['next_loss_scale'])
        self.iteration += 1
        self.last_loss = loss
        return loss, terms, lr

    def _save_running_stats(self):
        """Copy BatchNorm's running statistics (the forward pass updates them in place)."""
        if self._running_stats is None:
            stats = [p for p in self.net.collect_params().values()
                     if p.name.endswith(('running_mean', 'running_var'))]
            self._running_stats = [(d, d.copy()) for p in stats for d in p.list_data()]
        for array, copy in self._running_stats:
            array.copyto(copy)

    def _skip_nonfinite_update(self, loss, terms, lr):
        """Leave the weights as they were before this iteration's non-finite loss or
        gradients, or stop after ``max_nonfinite_steps`` such iterations in a row."""
        for array, copy in self._running_stats:
            copy.copyto(array)
        for param in self._accumulated:
            param.zero_grad()
        self._nonfinite_in_a_row += 1
        self.skipped_updates += 1
        if math.isfinite(loss):
            bad = []
            for ctx in self.ctx:
                bad += ['%s on %s' % (name, ctx) for name in
                        nonfinite_names(gradient_arrays(self.net, ctx))]
            what = ('the gradients are not finite: %s' % first_names(bad) if bad else
                    'the gradients of another worker are not finite')
        else:
            what = 'the loss is %s%s' % (loss, ' (%s)' % _terms(terms) if terms else '')
        where = 'epoch %d, iteration %d (lr %.3e)' % (self.epoch + 1, self.iteration, lr)
        if self._nonfinite_in_a_row >= self.config.max_nonfinite_steps:
            bad = self._nonfinite_weights()
            weights = (' The weights are non-finite already (%s): an earlier update overflowed '
                       'them.' % first_names(bad) if bad else '')
            raise NonFiniteError(
                'At %s %s; that is %d updates in a row with NaN or infinite numbers: training '
                'stopped before applying this one; %s.%s %s; a NaN in the data gives this too: '
                'check_inputs (--check-inputs) names the sample'
                % (where, what, self._nonfinite_in_a_row, self._last_good_checkpoint(), weights,
                   self.NONFINITE_ADVICE))
        logger.warning('At %s %s: update skipped (%d in a row; the run stops at %d). A NaN in '
                       'the data gives this too: check_inputs (--check-inputs) names the sample',
                       where, what, self._nonfinite_in_a_row, self.config.max_nonfinite_steps)
        self.iteration += 1

    def _nonfinite_weights(self):
        """Names of the non-finite parameters (weights, BatchNorm statistics) on any device;
        empty when all are finite."""
        bad = []
        for ctx in self.ctx:
            arrays = parameter_arrays(self.net, ctx)
            if not all_finite(arrays.values()):
                bad += ['%s on %s' % (name, ctx) for name in nonfinite_names(arrays)]
        return bad

    def _last_good_checkpoint(self):
        """What a stopped run leaves: a sentence about ``latest.ckpt``, checked to be finite."""
        latest = self.latest_path
        if not self.writes_files or not os.path.isfile(latest):
            return 'no checkpoint had been written'
        try:
            ckpt = load_checkpoint(latest)
        except CheckpointError as err:
            return 'the checkpoint cannot be read: %s' % err
        bad = nonfinite_names(ckpt.weights())
        if bad:
            return '%s holds non-finite weights too (%s): do not resume it' % (
                latest, first_names(bad))
        return 'the last good checkpoint, %s (iteration %d, all weights finite), is unchanged' % (
            latest, ckpt['iteration'])

    def _backward(self, losses):
        """Backward of the list ``losses`` (scaled by float16 AMP's loss scale)."""
        if self._loss_scaler is None:
            autograd.backward(losses)
            return
        # The subclasses call this after their autograd.record() block: the scaling must be
        # recorded too, or backward finds the scaled losses outside the graph.
        with autograd.record():
            with amp.scale_loss(losses, self.trainer) as scaled:
                scaled = list(scaled)
        autograd.backward(scaled)

    def _end_epoch(self):
        done = self.epoch  # completed epochs
        interval = self.config.val_interval
        # Workers other than 0 go on with the next epoch (and wait for worker 0 at its first
        # gradient sum).
        if self.rank == 0 and self.val_dataset is not None and interval and \
                (done % interval == 0 or done == self.config.epochs):
            self.validate()
        self.save()

    def _record_validation(self, record):
        """Complete a validation ``record`` (``BEST_METRIC`` and the metrics of the task)
        with the training state, update ``best``, append it to the metrics file; return it."""
        record = dict({'epoch': self.epoch, 'iteration': self.iteration}, **record)
        record['train_loss'] = self._epoch_loss[0] / max(self._epoch_loss[1], 1)
        record['lr'] = self.lr_scheduler(max(self.iteration - 1, 0))
        record['train_seconds'] = round(self.train_seconds, 2)
        score = record.get(self.BEST_METRIC)
        best = self.best[self.BEST_METRIC]
        if score is not None and (best is None or score > best):
            self.best = {self.BEST_METRIC: score, 'epoch': self.epoch,
                         'iteration': self.iteration}
        record['best_' + self.BEST_METRIC] = self.best[self.BEST_METRIC]
        self.last_metrics = record
        if self.writes_files:
            self.run_dir.append_record(METRICS_FILE, record)
        return record


def _terms(terms):
    return ', '.join('%s %.4f' % kv for kv in terms.items())


def _fmt(value):
    return 'none' if value is None else '%.4f' % value
