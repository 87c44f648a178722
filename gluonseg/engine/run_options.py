"""What the training front ends share when they run: the contexts the "devices and run"
options name (those options: :mod:`gluonseg.tools.run_arguments`), console logging, resuming
then fitting as the command line asks, and the closing lines of a run.

Used by ``gluonseg train`` for both tasks (:mod:`gluonseg.tools.train` and
:mod:`gluonseg.tools.instance_train`, also ``scripts/segmentation/train.py`` and
``scripts/instance/train_mask_rcnn.py``).
"""
import contextlib
import logging
import os
import sys

import mxnet as mx
from tqdm import tqdm

from .base_trainer import NonFiniteError, logger
from .checkpoint import CheckpointError, weight_file_kind
from .choices import gpu_ids
from .mixed_precision import init_amp
from .run_dir import LATEST_CHECKPOINT, RunDirectoryInUse

__all__ = ['contexts', 'start_amp', 'run_config_kwargs', 'run_args_record',
           'TqdmLoggingHandler', 'console_logging', 'resume_and_fit', 'UPDATE_STEPS_MEANING',
           'run_summary_lines']

# What the trainer's train_seconds counts: the time inside its update steps (_train_step).
UPDATE_STEPS_MEANING = ('forward, backward and optimizer update with the batch copy to the '
                        'devices, summed over the run and its resumed parts; not counted: data '
                        'loading and augmentation, validation, checkpoint writing')


def contexts(args):
    """The devices ``--gpus`` / ``--ctx-cpus`` name."""
    gpus = gpu_ids(args.gpus)
    if gpus:
        return [mx.gpu(i) for i in gpus]
    return [mx.cpu(i) for i in range(max(args.ctx_cpus, 1))]


def start_amp(args):
    """Switch on the mixed precision ``--amp`` asks for; call it before building the
    network."""
    if args.amp:
        init_amp(args.amp)


def run_config_kwargs(args):
    """The fields of :class:`~gluonseg.engine.base_trainer.BaseTrainConfig` that the "devices
    and run" options (and ``--workers``) set."""
    return dict(val_interval=args.val_interval, checkpoint_interval=args.checkpoint_interval,
                seed=args.seed, num_workers=args.workers, hybridize=not args.no_hybridize,
                progress=not args.no_progress and not args.quiet, kvstore=args.kvstore,
                amp=args.amp, accumulate=args.accumulate, check_inputs=args.check_inputs)


def run_args_record(args):
    """The parsed options as a JSON-serialisable dict (stored in checkpoints)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}


class TqdmLoggingHandler(logging.Handler):
    """Console logging that does not break tqdm progress bars."""

    def emit(self, record):
        try:
            tqdm.write(self.format(record))
        except Exception:  # pragma: no cover - never let logging kill training
            self.handleError(record)


@contextlib.contextmanager
def console_logging(args):
    """Show the training log on the console while the block runs: through tqdm (stdout) when
    progress bars are on, else on stderr; warnings only with ``--quiet``."""
    handler = TqdmLoggingHandler() if not args.no_progress else logging.StreamHandler()
    handler.setLevel(logging.WARNING if args.quiet else logging.INFO)
    handler.setFormatter(logging.Formatter('%(asctime)s %(message)s', '%H:%M:%S'))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)


def resume_and_fit(trainer, args):
    """Resume (``--resume``) and train (up to ``--max-iterations``) as the command line asks.

    Returns
    -------
    (int, dict or None)
        The exit code (0, or 2 after printing the error when the checkpoint cannot be resumed,
        another run holds the save dir, or the numbers became NaN/infinite) and the result of
        ``trainer.fit``.
    """
    if args.resume:
        path = args.resume
        if path == LATEST_CHECKPOINT and not os.path.isfile(path):
            path = trainer.latest_path
        try:
            trainer.resume(path)
        except RunDirectoryInUse as err:
            print('error: %s' % err, file=sys.stderr)
            return 2, None
        except (ValueError, CheckpointError) as err:
            advice = ('; start from its weights with --init-from instead'
                      if os.path.isfile(path) and weight_file_kind(path) == 'params' else '')
            print('error: cannot resume: %s%s' % (err, advice), file=sys.stderr)
            return 2, None
    try:
        return 0, trainer.fit(max_iterations=args.max_iterations)
    except (NonFiniteError, RunDirectoryInUse) as err:
        print('error: %s' % err, file=sys.stderr)
        return 2, None


def run_summary_lines(result, metric, wall):
    """The closing lines of a training run: its best and latest checkpoints, labelled, its
    wall time and the time of its update steps (``train_seconds``: :data:`UPDATE_STEPS_MEANING`).

    ``result`` is what ``trainer.fit`` returns; ``metric`` the trainer's ``BEST_METRIC``.
    """
    best = result['best']
    if result['best_checkpoint'] is None:
        best_line = 'best checkpoint: none (no validation result yet)'
    else:
        best_line = 'best checkpoint (%s %.4f at epoch %d): %s' % (
            metric, best[metric], best['epoch'], result['best_checkpoint'])
    return [best_line,
            'latest checkpoint (epoch %d, iteration %d; resume with --resume): %s'
            % (result['epoch'], result['iteration'], result['latest_checkpoint']),
            'wall time %.1f s (this process, set-up to end)' % wall,
            'update steps %.1f s (%s)' % (result['train_seconds'], UPDATE_STEPS_MEANING)]
