"""Mask R-CNN inference latency: the raw forward vs the lean one.

``raw``  ``net(x)``: GluonCV's output contract, 1000 rows, the mask head run on all of them.
``lean`` ``net.detect(x)``: the box head on the valid proposals, the mask head on the kept
         detections only (score >= 0.001, the best 100), the same detections.

For each model: random weights (nothing is downloaded; with random weights the class scores
are near 1/81, above the 0.01 threshold, so 100 detections are kept: the lean path's worst
case), ``--warmup`` runs, then the median of ``--repeat`` runs of each path, hybridized; and
the time to paste the kept masks at full size (the same for both paths)::

    python scripts/benchmark/mask_rcnn.py --size 800x1088 --repeat 3
"""
import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault('OMP_NUM_THREADS', str(min(os.cpu_count() or 1, 4)))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

import gluonseg  # noqa: E402
from gluonseg.model_zoo.rcnn.paste import paste_masks  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=['mask_rcnn_resnet50_v1b_coco',
                                                        'mask_rcnn_fpn_resnet50_v1b_coco'])
    parser.add_argument('--size', default='800x1088', help='input HxW')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--score-thresh', type=float, default=0.001)
    parser.add_argument('--max-dets', type=int, default=100)
    parser.add_argument('--rpn-test-post-nms', type=int, default=1000,
                        help='proposals per image (1000 published)')
    return parser.parse_args(argv)


def median_seconds(fn, warmup, repeat):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def run(fn):
    """Call and wait for every output (MXNet is asynchronous)."""
    def call():
        outputs = fn()
        mx.nd.waitall()
        return outputs
    return call


def main(argv=None):
    args = parse_args(argv)
    height, _, width = args.size.partition('x')
    height, width = int(height), int(width or height)
    print('Mask R-CNN %dx%d, mxnet %s, OMP_NUM_THREADS=%s, %s, %d cores; warmup %d, median '
          'of %d' % (height, width, mx.__version__, os.environ.get('OMP_NUM_THREADS'),
                     platform.processor() or platform.machine(), os.cpu_count() or 0,
                     args.warmup, args.repeat))
    print('%-36s %9s %9s %8s %9s %6s' % ('model', 'raw_s', 'lean_s', 'speedup', 'paste_s',
                                        'dets'))
    rows = []
    for name in args.models:
        mx.random.seed(0)
        net = gluonseg.get_model(name, pretrained_base=False,
                                 rpn_test_post_nms=args.rpn_test_post_nms)
        net.hybridize()
        x = mx.nd.array(np.random.RandomState(0).randn(1, 3, height, width))
        raw = median_seconds(run(lambda: net(x)), args.warmup, args.repeat)
        lean = median_seconds(run(lambda: net.detect(x, args.score_thresh, args.max_dets)),
                              args.warmup, args.repeat)
        ids, scores, boxes, masks = [o[0].asnumpy() for o in
                                     net.detect(x, args.score_thresh, args.max_dets)]
        kept = int((ids[:, 0] >= 0).sum())
        paste = median_seconds(lambda: paste_masks(masks[:kept], boxes[:kept],
                                                   (height, width)), 1, args.repeat)
        rows.append((name, raw, lean, paste, kept))
        print('%-36s %9.2f %9.2f %7.1fx %9.3f %6d' % (name, raw, lean, raw / lean, paste,
                                                      kept))
        sys.stdout.flush()
    return rows


if __name__ == '__main__':
    main()
    sys.exit(0)
