"""Inference latency of gluonseg models on this machine.

For each model and input size: warm-up runs, then the median latency, images/s and achieved
GFLOP/s (2 x the convolution/dense multiply-adds counted from the graph, divided by the median
time). Weights are random (the speed does not depend on them), so nothing is downloaded.

    python scripts/benchmark/inference.py --models deeplab_resnet101_voc --sizes 480 \
        --static --csv results.csv

``--dtype float32 bfloat16 int8`` times the paths of ``gluonseg.optimize()`` instead (fused
float32, AMP bfloat16, calibrated int8; one row each, mode ``optimize-<dtype>``); int8 is
calibrated on ``--calib-batches`` random batches of the benchmark's shape.

``--aux-head`` adds a row (mode ``...+aux-head``) timing each model's inference graph with its
auxiliary FCN head kept, and prints what leaving that head out of the inference graph saves
(a gluonseg model computes it only while training).
"""
import argparse
import os
import sys

import mxnet as mx
from mxnet import autograd

import gluonseg
from gluonseg.utils.flops import count_macs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import (machine_description, median_seconds, parse_size, print_row,  # noqa: E402
                     write_csv)

FIELDS = ['model', 'height', 'width', 'batch', 'mode', 'median_s', 'images_per_s', 'gmacs',
          'gflops_per_s', 'mxnet', 'threads', 'machine']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', default=['fcn_resnet101_voc', 'psp_resnet101_voc',
                                                        'deeplab_resnet101_voc'])
    parser.add_argument('--sizes', nargs='+', default=['480'],
                        help='input sizes, "480" or "512x1024" (HxW)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--no-hybridize', action='store_true', help='run imperatively')
    parser.add_argument('--static', action='store_true',
                        help='hybridize(static_alloc=True, static_shape=True)')
    parser.add_argument('--mkldnn', action='store_true',
                        help="fuse with optimize_for('MKLDNN') (oneDNN conv+bn+relu fusion)")
    parser.add_argument('--dtype', nargs='+', choices=['float32', 'bfloat16', 'int8'],
                        help='time gluonseg.optimize(net, dtype) for each dtype given')
    parser.add_argument('--calib-mode', default='naive', choices=['naive', 'entropy', 'none'],
                        help='int8 calibration (default naive)')
    parser.add_argument('--calib-batches', type=int, default=2,
                        help='int8: random calibration batches (default 2)')
    parser.add_argument('--aux-head', action='store_true',
                        help='also time the inference graph with the auxiliary head kept')
    parser.add_argument('--csv', help='also write the rows to this CSV file')
    args = parser.parse_args(argv)
    if args.aux_head and (args.dtype or args.no_hybridize):
        parser.error('--aux-head compares hybridized float32 graphs: drop --dtype and '
                     '--no-hybridize')
    return args


def with_aux_head(net, name):
    """A block running ``net``'s inference graph with the auxiliary head's output kept: what
    an ``aux=True`` model computes at inference if the head stays in its graph."""
    if not getattr(net, 'aux', False):
        raise SystemExit('--aux-head: %s has no auxiliary head' % name)
    data = mx.sym.var('data', dtype='float32')
    with autograd.train_mode():  # the graph's branch only; the calls run in inference mode
        outputs = net(data)
    return mx.gluon.SymbolBlock(list(outputs), data, params=net.collect_params())


def prepare(name, shape, args, dtype=None, aux_head=False):
    net = gluonseg.get_model(name, pretrained_base=False)
    if aux_head:
        net = with_aux_head(net, name)
    macs = count_macs(net, shape)
    x = mx.nd.random.uniform(-2, 2, shape=shape)
    if dtype is not None:
        calib = [mx.nd.random.uniform(-2, 2, shape=shape) for _ in range(args.calib_batches)]
        net = gluonseg.optimize(net, dtype=dtype, calib_data=calib, calib_mode=args.calib_mode,
                                num_calib_batches=args.calib_batches)
        mode = 'optimize-' + dtype
    elif args.mkldnn:
        net.hybridize(static_alloc=args.static, static_shape=args.static)
        net.optimize_for(x, backend='MKLDNN')
        mode = 'mkldnn' + ('+static' if args.static else '')
    elif args.no_hybridize:
        mode = 'imperative'
    else:
        net.hybridize(static_alloc=args.static, static_shape=args.static)
        mode = 'hybrid' + ('+static' if args.static else '')
    return net, x, macs, mode + ('+aux-head' if aux_head else '')


def print_aux_head_cost(label, without, kept):
    """What leaving the auxiliary head out saves; ``without`` and ``kept`` are the
    ``(multiply-adds, median seconds)`` of the two graphs."""
    print('{}: leaving the auxiliary head out of the inference graph saves {:.1f}% of the '
          'multiply-adds ({:.3g} of {:.3g} GMAC) and {:.1f}% of the median time'
          .format(label, 100 * (1 - without[0] / kept[0]), (kept[0] - without[0]) / 1e9,
                  kept[0] / 1e9, 100 * (1 - without[1] / kept[1])))


def main(argv=None):
    args = parse_args(argv)
    rows = []
    machine = machine_description()
    for name in args.models:
        for size in args.sizes:
            height, width = parse_size(size)
            shape = (args.batch, 3, height, width)
            runs = [(dtype, False) for dtype in args.dtype or [None]]
            if args.aux_head:
                runs.append((None, True))
            measured = {}
            for dtype, aux_head in runs:
                net, x, macs, mode = prepare(name, shape, args, dtype, aux_head)
                median = median_seconds(lambda: (net(x), mx.nd.waitall()), args.warmup,
                                        args.repeat)
                row = dict(model=name, height=height, width=width, batch=args.batch, mode=mode,
                           median_s=round(median, 4), images_per_s=round(args.batch / median, 3),
                           gmacs=round(macs / 1e9, 2),
                           gflops_per_s=round(2 * macs / 1e9 / median, 1),
                           mxnet=mx.__version__,
                           threads=os.environ.get('OMP_NUM_THREADS', 'default'),
                           machine=machine)
                rows.append(row)
                measured[aux_head] = macs, median
                print_row('{model:24s} {height:4d}x{width:<4d} batch {batch} {mode:22s} median '
                          '{median_s:.3f} s  {images_per_s:.2f} img/s  {gflops_per_s:.1f} GFLOP/s',
                          row)
            if args.aux_head:
                print_aux_head_cost('%s %dx%d' % (name, height, width), measured[False],
                                    measured[True])
    if args.csv:
        write_csv(args.csv, rows, FIELDS)
    return rows


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
