"""What the training front ends share: the "devices and run" options, the contexts they
name, console logging, and resuming then fitting as the command line asks.

Used by ``gluonseg train`` (:mod:`gluonseg.tools.train`, also ``scripts/segmentation/train.py``)
and ``scripts/instance/train_mask_rcnn.py``, so both take the same options with the same
meaning (listed in docs/training.md).
"""
import argparse
import contextlib
import logging
import os
import sys

import mxnet as mx

from .base_trainer import KVSTORES, LATEST_CHECKPOINT, NonFiniteError, TqdmLoggingHandler, logger
from .checkpoint import CheckpointError, weight_file_kind
from .run_dir import RunDirectoryInUse
from .mixed_precision import AMP_DTYPES, init_amp

__all__ = ['positive_int', 'add_run_arguments', 'contexts', 'start_amp', 'run_config_kwargs',
           'run_args_record', 'console_logging', 'resume_and_fit']


def positive_int(text):
    """An ``argparse`` type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('expected an integer >= 1, got %r' % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError('expected an integer >= 1, got %d' % value)
    return value


def add_run_arguments(parser, save_dir_default, seed_default=0, seed_help=None):
    """Add the "devices and run" group to ``parser``; returns the group (a front end may add
    its own options to it).

    Parameters
    ----------
    parser : argparse.ArgumentParser
    save_dir_default : str
        How the default ``--save-dir`` is made, for the help (e.g. ``runs/DATASET/MODEL``).
    seed_default : int or None
        None when the front end fills it from a preset.
    seed_help : str, optional
    """
    g = parser.add_argument_group('devices and run')
    g.add_argument('--gpus', default='', help='e.g. 0,1 (default: CPU)')
    g.add_argument('--ctx-cpus', type=int, default=1,
                   help='split each batch over this many CPU contexts (exercises the '
                   'data-parallel path without GPUs)')
    g.add_argument('--kvstore', choices=KVSTORES,
                   help='how gradients are summed: across devices (local, device, nccl) or '
                   'machines (dist_sync, dist_device_sync: run as a worker of a parameter-'
                   'server job, see docs/training.md) (default: device with several devices)')
    g.add_argument('--accumulate', type=positive_int, default=1, metavar='N',
                   help='sum the gradients of N batches per update (N times the images per '
                   'iteration with the memory of one batch)')
    g.add_argument('--amp', choices=AMP_DTYPES,
                   help='mixed precision: float16 (GPUs, with dynamic loss scaling) or bfloat16 '
                   '(CPUs with oneDNN, GPUs) (default: off, float32)')
    g.add_argument('--seed', type=int, default=seed_default, help=seed_help)
    g.add_argument('--val-interval', type=int, default=1, help='validate every N epochs')
    g.add_argument('--checkpoint-interval', type=int, default=0,
                   help='also save latest.ckpt every N iterations (0: at epoch ends)')
    g.add_argument('--max-iterations', type=int,
                   help='stop after this many iterations in all (resume later)')
    g.add_argument('--save-dir', help='default ' + save_dir_default)
    g.add_argument('--resume', nargs='?', const=LATEST_CHECKPOINT, metavar='CKPT',
                   help='continue a run: a checkpoint, or SAVE_DIR/latest.ckpt when no path')
    g.add_argument('--check-inputs', action='store_true',
                   help='check every training sample for NaN and infinite values and name the '
                   'first bad one')
    g.add_argument('--no-hybridize', action='store_true')
    g.add_argument('--no-progress', action='store_true', help='no tqdm bars')
    g.add_argument('--quiet', action='store_true', help='only warnings and the final result')
    return g


def contexts(args):
    """The devices ``--gpus`` / ``--ctx-cpus`` name."""
    if args.gpus.strip():
        return [mx.gpu(int(i)) for i in args.gpus.split(',') if i.strip()]
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
