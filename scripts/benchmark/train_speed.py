"""Training speed of FCN, PSPNet and DeepLabV3 on this machine, and where the time goes.

For each model (ResNet-50 by default, random weights, auxiliary head on as in the
published recipes): a temporary Pascal-VOC-style folder of generated 500x375 JPEGs is read
by ``VOCSegmentation`` with ``SegmentationTrainTransform`` (base 520, crop 480) through a
``DataLoader``; the network is hybridized with static allocation
(``hybridize(static_alloc=True, static_shape=True)``) and trained with SGD on
``SegmentationLoss``. After ``--warmup`` iterations (graph building, memory planning),
``--iters`` iterations are timed, split into

* ``data``: waiting for the next batch from the loader;
* ``compute``: forward, backward and the SGD update, until the engine is done.

    python scripts/benchmark/train_speed.py                         # fcn psp deeplab, ~5 min
    python scripts/benchmark/train_speed.py --models deeplab --workers 0 2 --csv train.csv
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import mxnet as mx
from mxnet import autograd, gluon

import gluonseg
from gluonseg.data import SegmentationTrainTransform, VOCSegmentation
from gluonseg.engine import SegmentationLoss

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _timing import machine_description, print_row, write_csv  # noqa: E402
from data_pipeline import write_voc_tree  # noqa: E402

FIELDS = ['model', 'crop', 'batch', 'workers', 'iters', 'images_per_s', 'data_s_per_iter',
          'compute_s_per_iter', 'data_share', 'mxnet', 'threads', 'machine']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=['fcn', 'psp', 'deeplab'],
                        choices=['fcn', 'psp', 'deeplab'])
    parser.add_argument('--depth', type=int, default=50, choices=[50, 101, 152])
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--base-size', type=int, default=520)
    parser.add_argument('--crop-size', type=int, default=480)
    parser.add_argument('--workers', type=int, nargs='+', default=[1],
                        help='DataLoader num_workers values to time (default 1)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed iterations first')
    parser.add_argument('--iters', type=int, default=5, help='timed iterations')
    parser.add_argument('--no-aux', action='store_true', help='train without the aux head')
    parser.add_argument('--images', type=int, default=16, help='generated images in the tree')
    parser.add_argument('--root', help='use (or create) the generated VOC tree here instead '
                                       'of a temporary folder')
    parser.add_argument('--csv', help='also write the rows to this CSV file')
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.iters < 1:
        parser.error('--warmup and --iters must be at least 1')
    return args


def batches(loader):
    """Batches forever (epoch after epoch)."""
    while True:
        for batch in loader:
            yield batch


def time_training(name, dataset, args, workers):
    """(data seconds, compute seconds) per timed iteration of ``name``."""
    net = gluonseg.get_model(name, pretrained_base=False, aux=not args.no_aux)
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 1e-3, 'momentum': 0.9, 'wd': 1e-4})
    loss_fn = SegmentationLoss()
    loader = gluon.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                   last_batch='discard', num_workers=workers)
    stream = batches(loader)
    data_s = compute_s = 0.0
    for step in range(args.warmup + args.iters):
        start = time.perf_counter()
        image, label = next(stream)
        # worker processes hand over batches in shared memory (cpu_shared)
        image, label = image.as_in_context(mx.cpu()), label.as_in_context(mx.cpu())
        image.wait_to_read()
        loaded = time.perf_counter()
        with autograd.record():
            loss = loss_fn(net(image), label)
        loss.backward()
        trainer.step(1)
        mx.nd.waitall()
        if step >= args.warmup:
            data_s += loaded - start
            compute_s += time.perf_counter() - loaded
    return data_s / args.iters, compute_s / args.iters


def main(argv=None):
    args = parse_args(argv)
    root = args.root or tempfile.mkdtemp(prefix='gluonseg_train_speed_')
    rows = []
    print('training speed; %s, mxnet %s, OMP_NUM_THREADS=%s; batch %d, crop %d, warmup %d, '
          '%d timed iterations' % (machine_description(), mx.__version__,
                                    os.environ.get('OMP_NUM_THREADS', 'default'),
                                    args.batch_size, args.crop_size, args.warmup, args.iters),
          flush=True)
    try:
        if not os.path.isdir(os.path.join(root, 'VOCdevkit', 'VOC2012', 'JPEGImages')):
            write_voc_tree(root, max(args.images, args.batch_size), 500, 375)
        transform = SegmentationTrainTransform(base_size=args.base_size,
                                               crop_size=args.crop_size)
        dataset = VOCSegmentation(root, 'train', transform=transform)
        for method in args.models:
            name = '%s_resnet%d_voc' % (method, args.depth)
            for workers in args.workers:
                data_s, compute_s = time_training(name, dataset, args, workers)
                step_s = data_s + compute_s
                row = dict(model=name, crop=args.crop_size, batch=args.batch_size,
                           workers=workers, iters=args.iters,
                           images_per_s=round(args.batch_size / step_s, 3),
                           data_s_per_iter=round(data_s, 4),
                           compute_s_per_iter=round(compute_s, 4),
                           data_share=round(data_s / step_s, 3), mxnet=mx.__version__,
                           threads=os.environ.get('OMP_NUM_THREADS', 'default'),
                           machine=machine_description())
                rows.append(row)
                print_row('{model:22s} workers {workers}: {images_per_s:6.2f} images/s; per '
                          'iteration data {data_s_per_iter:.3f} s + compute '
                          '{compute_s_per_iter:.3f} s (data {data_share:.0%})', row)
    finally:
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)
    if args.csv:
        write_csv(args.csv, rows, FIELDS)
    return rows


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
