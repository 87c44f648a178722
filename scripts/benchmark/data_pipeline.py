"""Speed of the segmentation training input pipeline and of the mIoU metric on this machine.

1. Training pipeline: a temporary Pascal-VOC-style folder of generated 500x375 JPEGs with
   palette PNG labels is read by ``VOCSegmentation`` with ``SegmentationTrainTransform``
   (base 520, crop 480: VOC's recipe) through a ``DataLoader``; images/s for each number of
   workers, after the first batch (worker start-up is not counted).
2. Metric: median time of ``SegmentationMetric.update`` on a batch of 16 480x480 predicted
   class ids (and, with ``--logits``, on the (16, C, 480, 480) scores they come from).

    python scripts/benchmark/data_pipeline.py                  # 0 and 2 workers
    python scripts/benchmark/data_pipeline.py --workers 0 4 8 --images 256
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import mxnet as mx
import numpy as np
from PIL import Image

from gluonseg.data import SegmentationTrainTransform, VOCSegmentation
from gluonseg.utils.metrics import SegmentationMetric
from gluonseg.utils.viz import voc_palette

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import median_seconds  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=64, help='generated images in the VOC tree')
    parser.add_argument('--image-size', default='500x375', help='WxH of the generated JPEGs')
    parser.add_argument('--base-size', type=int, default=520)
    parser.add_argument('--crop-size', type=int, default=480)
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 2],
                        help='DataLoader num_workers values to time')
    parser.add_argument('--epochs', type=int, default=1, help='passes over the images per setting')
    parser.add_argument('--metric-batch', type=int, default=16)
    parser.add_argument('--metric-size', type=int, default=480)
    parser.add_argument('--nclass', type=int, default=21)
    parser.add_argument('--metric-repeat', type=int, default=5)
    parser.add_argument('--logits', action='store_true',
                        help='also time update() on class scores (N, C, H, W) instead of ids')
    parser.add_argument('--root', help='use (or create) the generated VOC tree here instead of a '
                                       'temporary folder')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def write_voc_tree(root, count, width, height, seed=0):
    """Generated VOC2012 layout: JPEGs (smooth colour fields, so they compress like photos) and
    palette PNGs of a few rectangles with 255 borders; every image listed in ``train.txt``."""
    base = os.path.join(root, 'VOCdevkit', 'VOC2012')
    for sub in ('JPEGImages', 'SegmentationClass', os.path.join('ImageSets', 'Segmentation')):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    rng = np.random.RandomState(seed)
    palette = voc_palette().ravel().tolist()
    ids = []
    for n in range(count):
        image_id = '2012_%06d' % n
        ids.append(image_id)
        coarse = rng.randint(0, 256, size=(height // 25 + 1, width // 25 + 1, 3)).astype(np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
        image.save(os.path.join(base, 'JPEGImages', image_id + '.jpg'), quality=90)
        mask = np.zeros((height, width), dtype=np.uint8)
        for _ in range(3):
            y0, x0 = rng.randint(0, height - 10), rng.randint(0, width - 10)
            y1, x1 = rng.randint(y0 + 5, height), rng.randint(x0 + 5, width)
            mask[y0:y1, x0:x1] = 255
            mask[y0 + 2:y1 - 2, x0 + 2:x1 - 2] = rng.randint(1, 21)
        png = Image.fromarray(mask, mode='P')
        png.putpalette(palette)
        png.save(os.path.join(base, 'SegmentationClass', image_id + '.png'))
    with open(os.path.join(base, 'ImageSets', 'Segmentation', 'train.txt'), 'w') as f:
        f.write(''.join(i + '\n' for i in ids))
    return root


def time_loader(dataset, batch_size, workers, epochs):
    """(images/s after the first batch, number of timed images)."""
    loader = mx.gluon.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                      last_batch='discard', num_workers=workers)
    timed, start = 0, None
    for _ in range(epochs):
        for images, masks in loader:
            images.wait_to_read()
            if start is None:  # the first batch pays for worker start-up
                start = time.perf_counter()
                continue
            timed += images.shape[0]
    elapsed = time.perf_counter() - start if start is not None else 0.0
    return (timed / elapsed if elapsed > 0 and timed else float('nan')), timed


def time_metric(nclass, batch, size, repeat, logits, seed=0):
    """Median seconds of one SegmentationMetric.update on a batch."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, nclass, size=(batch, size, size)).astype(np.int32)
    labels[:, :4] = 255
    if logits:
        preds = rng.standard_normal((batch, nclass, size, size)).astype(np.float32)
    else:
        preds = rng.randint(0, nclass, size=(batch, size, size)).astype(np.int64)
    metric = SegmentationMetric(nclass)
    return median_seconds(lambda: metric.update(labels, preds), warmup=0, repeat=repeat)


def main(argv=None):
    """Run the benchmark; returns the numbers as a dict (and prints them)."""
    args = parse_args(argv)
    width, _, height = args.image_size.partition('x')
    width, height = int(width), int(height or width)
    results = {'loader': {}, 'metric': {}}
    root = args.root or tempfile.mkdtemp(prefix='gluonseg_bench_voc_')
    try:
        if not os.path.isdir(os.path.join(root, 'VOCdevkit', 'VOC2012', 'JPEGImages')):
            start = time.perf_counter()
            write_voc_tree(root, args.images, width, height, args.seed)
            print('wrote %d %dx%d JPEGs + labels in %.1f s (%s)'
                  % (args.images, width, height, time.perf_counter() - start, root))
        transform = SegmentationTrainTransform(base_size=args.base_size, crop_size=args.crop_size)
        dataset = VOCSegmentation(root, 'train', transform=transform)
        print('training pipeline: %s, batch %d, %d images' % (transform, args.batch_size, len(dataset)))
        for workers in args.workers:
            rate, count = time_loader(dataset, args.batch_size, workers, args.epochs)
            results['loader'][workers] = rate
            print('  num_workers=%d: %.1f images/s (%d images timed)' % (workers, rate, count))
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)
    kinds = [('ids', False)] + ([('logits', True)] if args.logits else [])
    print('SegmentationMetric(%d).update, batch %d x %dx%d, median of %d:'
          % (args.nclass, args.metric_batch, args.metric_size, args.metric_size, args.metric_repeat))
    for name, logits in kinds:
        seconds = time_metric(args.nclass, args.metric_batch, args.metric_size, args.metric_repeat, logits,
                              args.seed)
        results['metric'][name] = seconds
        print('  %s: %.1f ms' % (name, seconds * 1e3))
    return results


if __name__ == '__main__':
    main()
    sys.exit(0)
