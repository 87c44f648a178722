"""The "devices and run" options of the training commands: ``gluonseg train`` for both tasks,
``scripts/segmentation/train.py`` and ``scripts/instance/train_mask_rcnn.py`` take the same
options with the same meaning (listed in docs/training.md).

Plain ``argparse``, so that ``--help`` answers without MXNet; :mod:`gluonseg.engine.run_options`
turns the parsed options into devices, logging and a run.
"""
import argparse

from ..engine.choices import AMP_DTYPES, KVSTORES, gpu_ids
from ..engine.run_dir import LATEST_CHECKPOINT

__all__ = ['positive_int', 'device_count', 'add_run_arguments']



def positive_int(text):
    """An ``argparse`` type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('expected an integer >= 1, got %r' % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError('expected an integer >= 1, got %d' % value)
    return value


def device_count(args):
    """How many devices ``--gpus`` / ``--ctx-cpus`` name (the contexts of
    :func:`gluonseg.engine.run_options.contexts`)."""
    return len(gpu_ids(args.gpus)) or max(args.ctx_cpus, 1)


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
