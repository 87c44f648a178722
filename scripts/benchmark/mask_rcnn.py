"""Mask R-CNN inference latency by path and stage, at several input sizes.

Paths:

``raw``    ``net(x)``: GluonCV's output contract, 1000 rows, the mask head run on all of them.
``lean``   ``net.detect(x)``: the box head on the valid proposals, the mask head on the kept
           detections only (score >= 0.001, the best 100), the same detections.
``fused``  ``gluonseg.optimize(net).detect(x)``: the lean path with the backbone, RPN and
           heads fused by oneDNN (frozen BatchNorm folded into the convolutions); the same
           detections up to float rounding.
``int8``   ``gluonseg.optimize(net, dtype='int8')``: fused, and the backbone, the RPN's
           convs, the box head (C4's stage 4, FPN's FCs) and the mask head quantized
           (calibrated on one random image); opt-in, the detections change slightly.

The lean paths run their stages one after another (waiting for each), so one run gives
the total, the kept detections (``dets``) and the time of each stage: ``backbone``, ``rpn`` (RPN head, proposals and their
NMS), ``box`` (RoIAlign, C4's stage 4, box head, per-class NMS), ``mask`` (RoIAlign, C4's
stage 4, mask head on the kept detections) and ``paste`` (the kept masks pasted at full
size in NumPy, :func:`~gluonseg.model_zoo.rcnn.paste_masks`); the shares are of their sum.

Random weights (nothing is downloaded): the class scores are near 1/81, above the 0.01
threshold, so 100 detections are kept, the lean path's worst case. ``--warmup`` runs, then
the median of ``--repeat``::

    python scripts/benchmark/mask_rcnn.py --sizes 800x1333 600x1000 --csv mask_rcnn.csv
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault('OMP_NUM_THREADS', str(min(os.cpu_count() or 1, 4)))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

import gluonseg  # noqa: E402
from gluonseg.model_zoo.rcnn.inference import LeanDetector  # noqa: E402
from gluonseg.utils.paste import paste_masks  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import (machine_description, median_seconds, parse_size,  # noqa: E402
                     print_result, print_row, run_child, write_csv)

PATHS = ('raw', 'lean', 'fused', 'int8')
STAGES = ('backbone', 'rpn', 'box', 'mask', 'paste')
FIELDS = (['model', 'height', 'width', 'path', 'total_s', 'speedup_vs_raw', 'dets'] +
          ['%s_s' % s for s in STAGES] + ['%s_share' % s for s in STAGES])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=['mask_rcnn_resnet50_v1b_coco',
                                                        'mask_rcnn_fpn_resnet50_v1b_coco'])
    parser.add_argument('--sizes', nargs='+', default=['800x1333', '600x1000'],
                        help='input sizes HxW (the published test scale pads to 800x1333 at '
                             'most; GluonCV\'s demos use 600x1000)')
    parser.add_argument('--paths', nargs='+', default=['raw', 'lean', 'fused'], choices=PATHS)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--score-thresh', type=float, default=0.001)
    parser.add_argument('--max-dets', type=int, default=100)
    parser.add_argument('--rpn-test-post-nms', type=int, default=1000,
                        help='proposals per image (1000 published)')
    parser.add_argument('--csv', help='also write the rows to this CSV file')
    parser.add_argument('--in-process', action='store_true',
                        help='run every path in this process; by default each model, size '
                             'and path runs in a process of its own (C4 fused at 800x1333 '
                             'took 7.05 s after the raw and lean paths in one process, '
                             '6.13 s on its own)')
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def detector(net, path, x):
    if path == 'lean':
        return LeanDetector(net)
    if path == 'fused':
        return gluonseg.optimize(net)
    return gluonseg.optimize(net, dtype='int8', calib_data=[x * 0.9])


def staged_run(det, x, score_thresh, max_dets, times):
    """One lean inference, stage by stage, adding each stage's seconds to ``times``."""
    clock = _StageClock(times)
    features = clock('backbone', lambda: det.backbone(x))
    proposals, counts = clock('rpn', lambda: det.propose(x, features))
    ids, scores, boxes, kept = clock('box', lambda: det.detect_boxes(
        features, proposals, counts, score_thresh, max_dets))
    masks = clock('mask', lambda: det.detect_masks(features, ids, boxes, kept))
    k = sum(n for _, n in kept)
    masks, boxes = masks[0, :k].asnumpy(), boxes[0, :k].asnumpy()
    clock('paste', lambda: paste_masks(masks, boxes, x.shape[2:]))
    return k


class _StageClock(object):
    def __init__(self, times):
        self.times = times

    def __call__(self, stage, fn):
        start = time.perf_counter()
        out = fn()
        mx.nd.waitall()
        self.times.setdefault(stage, []).append(time.perf_counter() - start)
        return out


def time_lean(det, x, args):
    """(median total seconds without the paste, {stage: median seconds}, kept detections)."""
    times = {}
    for _ in range(args.warmup + args.repeat):
        kept = staged_run(det, x, args.score_thresh, args.max_dets, times)
    timed = {s: times[s][args.warmup:] for s in STAGES}
    totals = [sum(timed[s][i] for s in STAGES[:-1]) for i in range(args.repeat)]
    return (statistics.median(totals), {s: statistics.median(timed[s]) for s in STAGES},
            kept)


def measure(name, size, path, args):
    """The row of ``path`` for model ``name`` at ``size`` (random weights, seeded)."""
    height, width = parse_size(size)
    mx.random.seed(0)
    net = gluonseg.get_model(name, pretrained_base=False,
                             rpn_test_post_nms=args.rpn_test_post_nms)
    net.hybridize()
    x = mx.nd.array(np.random.RandomState(0).randn(1, 3, height, width))
    row = dict(model=name, height=height, width=width, path=path, speedup_vs_raw='')
    if path == 'raw':
        total = median_seconds(lambda: [o.wait_to_read() for o in net(x)], args.warmup,
                               args.repeat)
        row.update(total_s=total, dets='',  # 1000 rows, masks for all
                   **{'%s_%s' % (s, k): '' for s in STAGES for k in ('s', 'share')})
        return row
    total, stages, kept = time_lean(detector(net, path, x), x, args)
    whole = sum(stages.values())
    row.update(total_s=total, dets=kept, **{'%s_s' % s: stages[s] for s in STAGES},
               **{'%s_share' % s: stages[s] / whole for s in STAGES})
    return row


def measure_in_child(name, size, path, args):
    """:func:`measure` in a fresh process."""
    argv = [os.path.abspath(__file__), '--child', '--models', name, '--sizes', size,
            '--paths', path, '--warmup', str(args.warmup), '--repeat', str(args.repeat),
            '--score-thresh', repr(args.score_thresh), '--max-dets', str(args.max_dets),
            '--rpn-test-post-nms', str(args.rpn_test_post_nms)]
    row, error = run_child(argv)
    if error:
        raise RuntimeError('measuring %s %s at %s failed: %s' % (name, path, size, error))
    return row


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print_result(measure(args.models[0], args.sizes[0], args.paths[0], args))
        return None
    print('Mask R-CNN; mxnet %s, OMP_NUM_THREADS=%s, %s; warmup %d, median of %d; %s'
          % (mx.__version__, os.environ.get('OMP_NUM_THREADS'), machine_description(),
             args.warmup, args.repeat,
             'one process' if args.in_process else 'a process per model, size and path'))
    template = ('{model:34s} {height:4d}x{width:<4d} {path:5s} {total_s:7.2f} s '
                '{speedup_vs_raw:>6} {dets:4d} dets  backbone {backbone_share:4.0%} '
                'rpn {rpn_share:4.0%} box {box_share:4.0%} mask {mask_share:4.0%} '
                'paste {paste_share:4.0%}')
    rows = []
    for name in args.models:
        for size in args.sizes:
            raw = None
            for path in args.paths:
                row = (measure if args.in_process else measure_in_child)(name, size, path,
                                                                         args)
                rows.append(row)
                if path == 'raw':
                    raw = row['total_s']
                    print('{model:34s} {height:4d}x{width:<4d} raw   {total_s:7.2f} s'
                          .format(**row), flush=True)
                    continue
                if raw:
                    row['speedup_vs_raw'] = '%.1fx' % (raw / row['total_s'])
                print_row(template, row)
    if args.csv:
        write_csv(args.csv, rows, FIELDS)
    return rows


if __name__ == '__main__':
    main()
