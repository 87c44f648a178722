"""Time of pasting Mask R-CNN's box masks at full size (``paste_masks``), idle or beside
busy MXNet processes.

``net.predict`` and the COCO evaluation paste every kept detection's 28x28 mask into the
image; this times that step alone on random masks and boxes, for a few box sizes::

    python scripts/benchmark/paste.py --image 800x1088 --count 100 --boxes 20-200 200-600
    python scripts/benchmark/paste.py --busy 2   # while two processes run MXNet convs
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import median_seconds, parse_size  # noqa: E402

from gluonseg.utils.paste import paste_masks  # noqa: E402

# What each --busy process runs: 3x3 convolutions on an FPN-sized map, back to back.
BUSY_LOOP = """
import mxnet as mx
x = mx.nd.random.normal(shape=(1, 256, 100, 136))
w = mx.nd.random.normal(shape=(256, 256, 3, 3))
while True:
    mx.nd.Convolution(x, w, kernel=(3, 3), pad=(1, 1), num_filter=256,
                      no_bias=True).wait_to_read()
"""


def parse_range(text):
    """``'20-200'`` -> (20.0, 200.0): box sides drawn uniformly in that range, in pixels."""
    low, _, high = text.partition('-')
    try:
        low, high = float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError('a box range is "MIN-MAX" pixels, not %r' % text)
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError('a box range needs 0 < MIN <= MAX, not %r' % text)
    return low, high


def random_detections(count, side_range, image_size, mask_size, rng):
    """``count`` masks (count, M, M) of uniform probabilities and boxes inside the image."""
    height, width = image_size
    low, high = side_range
    sides = rng.uniform(low, min(high, height, width), (count, 2))
    corners = rng.uniform(0, 1, (count, 2)) * (np.array([width, height]) - sides)
    boxes = np.concatenate([corners, corners + sides], axis=1)
    return rng.uniform(0, 1, (count, mask_size, mask_size)).astype(np.float32), boxes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--image', type=parse_size, default=(800, 1088), help='HxW')
    parser.add_argument('--count', type=int, default=100, help='detections per image')
    parser.add_argument('--mask-size', type=int, default=28)
    parser.add_argument('--boxes', type=parse_range, nargs='+',
                        default=[(20.0, 200.0), (200.0, 600.0)], help='box side ranges')
    parser.add_argument('--busy', type=int, default=0, metavar='N',
                        help='time while N other processes run MXNet convolutions')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.RandomState(0)
    busy = [subprocess.Popen([sys.executable, '-c', BUSY_LOOP]) for _ in range(args.busy)]
    rows = []
    try:
        if busy:
            time.sleep(3)  # let them import MXNet and start computing
        for side_range in args.boxes:
            masks, boxes = random_detections(args.count, side_range, args.image,
                                             args.mask_size, rng)
            seconds = median_seconds(lambda: paste_masks(masks, boxes, args.image),
                                     args.warmup, args.repeat)
            rows.append(dict(boxes='%g-%g' % side_range, count=args.count,
                             image='%dx%d' % args.image, busy=args.busy, median_s=seconds))
            print('%d masks, box sides %s px, image %s, %d busy processes: median %.1f ms'
                  % (args.count, rows[-1]['boxes'], rows[-1]['image'], args.busy,
                     1e3 * seconds), flush=True)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    return rows


if __name__ == '__main__':
    main()
