"""mIoU of gluonseg.optimize()'s paths on a Shapes-trained model, against float32.

Trains ``<method>_resnet18_shapes`` from scratch on the built-in Shapes data with the training
engine (the recipe of ``scripts/segmentation/train.py``'s shapes preset: 64x64, batch 8,
lr 0.02, poly; a few minutes on 2 CPU cores), or loads weights saved by it (``--params``), then
evaluates float32, fused float32, bfloat16 and int8 (naive and entropy calibration on
``--calib-batches`` training batches) on the Shapes ``val`` split. Exits with status 1 when a
path's mIoU is more than ``--max-drop`` points (default 1.0) below float32's.

    python scripts/benchmark/optimize_shapes_miou.py                 # train FCN, ~5 min
    python scripts/benchmark/optimize_shapes_miou.py --method deeplab --epochs 8
    python scripts/segmentation/train.py --save-dir runs/shapes            # then:
    python scripts/benchmark/optimize_shapes_miou.py --params runs/shapes/best.ckpt
"""
import argparse
import os
import sys
import time
import warnings

import mxnet as mx
import numpy as np

import gluonseg
from gluonseg.data import SegmentationTrainTransform, SegmentationValTransform, ShapesSegmentation
from gluonseg.engine import (SegmentationTrainer, TrainConfig, evaluate_segmentation,
                             load_weights_from)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import print_row, write_csv  # noqa: E402

FIELDS = ['method', 'path', 'mIoU', 'pixAcc', 'delta_mIoU_points', 'eval_s']
PATHS = ['float32', 'fused-float32', 'bfloat16', 'int8-naive', 'int8-entropy']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--method', default='fcn', choices=['fcn', 'psp', 'deeplab'])
    parser.add_argument('--params', help='weights to load instead of training: a checkpoint '
                                         'of scripts/segmentation/train.py (best.ckpt) or '
                                         'save_parameters() of <method>_resnet18_shapes')
    parser.add_argument('--aux', action='store_true', help='the loaded/trained model has aux')
    parser.add_argument('--size', type=int, default=64)
    parser.add_argument('--epochs', type=int, default=6)
    parser.add_argument('--train-length', type=int, default=2000)
    parser.add_argument('--val-length', type=int, default=200)
    parser.add_argument('--lr', type=float, default=0.02)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--calib-batches', type=int, default=4)
    parser.add_argument('--paths', nargs='+', default=PATHS, choices=PATHS)
    parser.add_argument('--max-drop', type=float, default=1.0,
                        help='largest mIoU drop (points) accepted against float32')
    parser.add_argument('--save-dir', help='keep the training checkpoints here')
    parser.add_argument('--csv')
    return parser.parse_args(argv)


def build_net(args):
    net = gluonseg.get_model('%s_resnet18_shapes' % args.method, pretrained_base=False,
                             aux=args.aux)
    if args.params:
        weights = load_weights_from(args.params)
        params = net._collect_params_with_prefix()
        missing = sorted(set(params) - set(weights))
        if missing:
            raise ValueError('%s lacks %d arrays of %s_resnet18_shapes (aux=%s), e.g. %s'
                             % (args.params, len(missing), args.method, args.aux, missing[0]))
        for name, param in params.items():
            param.set_data(weights[name])
        return net
    train = ShapesSegmentation('train', length=args.train_length, size=args.size)
    val = ShapesSegmentation('val', length=args.val_length, size=args.size,
                             transform=SegmentationValTransform(args.size))
    augment = SegmentationTrainTransform(base_size=args.size, crop_size=args.size,
                                         scale_range=(1.0, 1.0))
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         val_interval=0, progress=False, seed=0)
    start = time.time()
    SegmentationTrainer(net, train, val, ctx=[mx.cpu()], config=config,
                        save_dir=args.save_dir, train_transform=augment).fit()
    print('trained %s_resnet18_shapes for %d epochs in %.0f s'
          % (args.method, args.epochs, time.time() - start), flush=True)
    return net


def calibration_batches(args):
    """Normalized training scenes (never the val split) in batches of ``--batch-size``."""
    data = ShapesSegmentation('train', length=args.calib_batches * args.batch_size,
                              size=args.size, transform=SegmentationValTransform(args.size))
    images = np.stack([data[i][0] for i in range(len(data))])
    return [mx.nd.array(images[i:i + args.batch_size])
            for i in range(0, len(images), args.batch_size)]


def optimized(net, path, calib):
    if path == 'float32':
        return net
    dtype, _, calib_mode = path.partition('-')
    if dtype == 'fused':
        dtype, calib_mode = 'float32', ''
    return gluonseg.optimize(net, dtype=dtype, calib_data=calib,
                             calib_mode=calib_mode or 'naive', num_calib_batches=len(calib))


def main(argv=None):
    args = parse_args(argv)
    warnings.simplefilter('ignore', UserWarning)
    mx.random.seed(0)
    net = build_net(args)
    net.hybridize()
    val = ShapesSegmentation('val', length=args.val_length, size=args.size,
                             transform=SegmentationValTransform(args.size))
    calib = calibration_batches(args)
    rows, base = [], None
    for path in args.paths:
        model = optimized(net, path, calib)
        metric = evaluate_segmentation(model, val, batch_size=args.batch_size, nclass=4)
        pix_acc, miou = metric.get()
        base = miou if base is None else base
        row = dict(method=args.method, path=path, mIoU=round(100 * miou, 2),
                   pixAcc=round(100 * pix_acc, 2),
                   delta_mIoU_points=round(100 * (miou - base), 2),
                   eval_s=round(metric.seconds, 1))
        rows.append(row)
        print_row('{path:14s} mIoU {mIoU:6.2f}  pixAcc {pixAcc:6.2f}  delta '
                  '{delta_mIoU_points:+5.2f} points  ({eval_s:.1f} s)', row)
    if args.csv:
        write_csv(args.csv, rows, FIELDS)
    worst = min(row['delta_mIoU_points'] for row in rows)
    if worst < -args.max_drop:
        print('FAILED: a path loses %.2f mIoU points (> %.2f)' % (-worst, args.max_drop))
        return None
    return rows


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
