"""Training curves of a run: the loss and the validation metrics, drawn into ``curves.png``.

The trainers call :func:`plot_training_curves` at the end of ``fit()``; it also works alone on
any run folder (``train.log`` and/or ``metrics.jsonl``)::

    python -m gluonseg.utils.plot runs/shapes/fcn_resnet18_shapes

It draws with matplotlib's Agg canvas (no display, no change to pyplot's backend).
"""
import argparse
import json
import math
import os
import re
import sys

from .atomic import write_atomically

__all__ = ['CURVES_FILE', 'DEFAULT_METRICS', 'read_training_curves', 'plot_training_curves']

CURVES_FILE = 'curves.png'

#: Metrics drawn when present in ``metrics.jsonl``: semantic runs, then Mask R-CNN runs.
DEFAULT_METRICS = ('mIoU', 'pixAcc', 'segm/AP', 'bbox/AP')

# The trainers' log line every log_interval iterations: "... iteration 40/1250: loss 0.5722 ..."
_LOGGED_LOSS = re.compile(r'iteration (\d+)/\d+: loss (\S+)')


def read_training_curves(run_dir):
    """The curves of the run in ``run_dir``.

    Returns
    -------
    (list of (int, float), list of dict)
        The logged ``(iteration, loss)`` pairs of ``train.log`` and the validation records of
        ``metrics.jsonl`` (either may be empty). ``train.log`` is appended to by every run in
        the folder: where its iterations go back (a resumed run logging again the iterations
        after its checkpoint, or a new run), the later lines replace the earlier ones from
        that iteration on.
    """
    losses, records = [], []
    log_path = os.path.join(run_dir, 'train.log')
    if os.path.isfile(log_path):
        with open(log_path) as f:
            for line in f:
                match = _LOGGED_LOSS.search(line)
                if match:
                    iteration = int(match.group(1))
                    while losses and losses[-1][0] >= iteration:
                        losses.pop()
                    losses.append((iteration, float(match.group(2))))
    metrics_path = os.path.join(run_dir, 'metrics.jsonl')
    if os.path.isfile(metrics_path):
        with open(metrics_path) as f:
            records = [json.loads(line) for line in f if line.strip()]
    return losses, records


def plot_training_curves(run_dir, output=None, metrics=None, size=(10, 4), dpi=100):
    """Draw the loss and the validation metrics of the run in ``run_dir`` into a PNG.

    Left: the loss of the logged iterations (``train.log``) and the mean loss of each epoch
    (``metrics.jsonl``) against the iteration. Right: the validation metrics against the epoch.

    Parameters
    ----------
    run_dir : str
        A trainer's ``save_dir``.
    output : str, optional
        Default ``run_dir/curves.png``; written atomically.
    metrics : sequence of str, optional
        Fields of ``metrics.jsonl`` to draw (default: those of :data:`DEFAULT_METRICS` the
        records have).
    size : (float, float)
        Inches; the image is ``size x dpi`` pixels.
    dpi : int

    Returns
    -------
    str
        The PNG's path.

    Raises
    ------
    ImportError
        Without matplotlib.
    FileNotFoundError
        When the folder has neither a logged loss nor a validation record.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: optional, pip install matplotlib
        from matplotlib.figure import Figure  # lazy: optional, pip install matplotlib
        from matplotlib.ticker import MaxNLocator  # lazy: optional, pip install matplotlib
    except ImportError as err:
        raise ImportError('plotting training curves needs matplotlib (pip install '
                          '"matplotlib<3.10"): %s' % err) from None
    losses, records = read_training_curves(run_dir)
    if not losses and not records:
        raise FileNotFoundError('No training curves in %s: no loss lines in train.log and no '
                                'records in metrics.jsonl' % run_dir)
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if any(r.get(m) is not None for r in records)]
    output = output or os.path.join(run_dir, CURVES_FILE)

    figure = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(figure)
    loss_axes, metric_axes = figure.subplots(1, 2)
    if losses:
        loss_axes.plot(*zip(*losses), '.-', lw=1, ms=3, label='logged iterations')
    epoch_means = [(r['iteration'], r['train_loss']) for r in records
                   if _finite(r.get('train_loss'))]
    if epoch_means:
        loss_axes.plot(*zip(*epoch_means), 'o', label='epoch mean')
    loss_axes.set(xlabel='iteration', ylabel='training loss', title='loss')
    loss_axes.legend(fontsize=8)
    drawn = False
    for name in metrics:
        points = [(r['epoch'], r[name]) for r in records if _finite(r.get(name))]
        if points:
            metric_axes.plot(*zip(*points), 'o-', label=name)
            drawn = True
    metric_axes.set(xlabel='epoch', title='validation', ylim=(0, 1))
    metric_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if drawn:
        metric_axes.legend(fontsize=8)
    else:
        metric_axes.text(0.5, 0.5, 'no validation yet', ha='center', va='center',
                         transform=metric_axes.transAxes)
    figure.suptitle(os.path.basename(os.path.normpath(run_dir)), fontsize=10)
    figure.tight_layout()

    return write_atomically(output, lambda f: figure.savefig(f, format='png'))


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def main(argv=None):
    p = argparse.ArgumentParser(description='Draw the training curves of a run folder.')
    p.add_argument('run_dir')
    p.add_argument('-o', '--output', help='default RUN_DIR/curves.png')
    p.add_argument('--metrics', nargs='+', help='fields of metrics.jsonl (default: mIoU, '
                   'pixAcc, segm/AP, bbox/AP, those present)')
    args = p.parse_args(argv)
    try:
        print(plot_training_curves(args.run_dir, args.output, args.metrics))
    except (ImportError, FileNotFoundError) as err:
        print('error: %s' % err, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
