"""Logit errors of gluonseg.optimize()'s paths on a golden network, against float32.

The network gets the deterministic golden weights of ``tests/data/golden`` and runs on the
golden input; its float32 output is checked against GluonCV's golden output first. Each path
(fused float32, bfloat16, int8 with naive and entropy calibration, and the ONNX export on
onnxruntime when installed) is compared with it:

* ``max_rel``: max |path - float32| / max |float32| over the logits;
* ``mean_rel``: mean |path - float32| / mean |float32|;
* ``argmax``: share of pixels whose class agrees with float32.

int8 is calibrated on ``--calib-batches`` random batches drawn like the golden input (same
mean and std, independent of it).

    python scripts/benchmark/optimize_accuracy.py                       # DeepLabV3-R101
    python scripts/benchmark/optimize_accuracy.py --model psp_resnet101_voc --csv acc.csv
"""
import argparse
import os
import sys
import tempfile
import time
import warnings

import mxnet as mx
import numpy as np

import gluonseg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'tests'))
from spec_utils import fill_golden_weights, golden  # noqa: E402

sys.path.insert(0, HERE)
from _timing import print_row, write_csv  # noqa: E402

FIELDS = ['model', 'path', 'max_rel', 'mean_rel', 'argmax', 'build_s']
PATHS = ['float32', 'bfloat16', 'int8-naive', 'int8-entropy', 'onnx']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='deeplab_resnet101_voc',
                        help='a model with a golden file in tests/data/golden')
    parser.add_argument('--paths', nargs='+', default=PATHS, choices=PATHS)
    parser.add_argument('--calib-batches', type=int, default=2)
    parser.add_argument('--calib-batch-size', type=int, default=2)
    parser.add_argument('--csv', help='also write the rows to this CSV file')
    return parser.parse_args(argv)


def compare(out, ref):
    return dict(max_rel=float(np.abs(out - ref).max() / np.abs(ref).max()),
                mean_rel=float(np.abs(out - ref).mean() / np.abs(ref).mean()),
                argmax=float((out.argmax(axis=1) == ref.argmax(axis=1)).mean()))


def run_path(path, net, x, calib):
    if path == 'onnx':
        return run_onnx(net, x)
    dtype, _, calib_mode = path.partition('-')
    model = gluonseg.optimize(net, dtype=dtype, calib_data=calib,
                              calib_mode=calib_mode or 'naive', num_calib_batches=len(calib))
    return model(mx.nd.array(x)).asnumpy()


def run_onnx(net, x):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from gluonseg.model_zoo.onnx_export import export_onnx
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(net, os.path.join(folder, 'model.onnx'), input_shape=x.shape)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        return session.run(None, {'data': x})[0]


def main(argv=None):
    args = parse_args(argv)
    warnings.simplefilter('ignore', UserWarning)
    data = golden(args.model)
    x = data['input'].astype(np.float32)
    net = gluonseg.get_model(args.model, pretrained_base=False)
    fill_golden_weights(net)
    net.hybridize()
    ref = net(mx.nd.array(x)).asnumpy()
    golden_rel = np.abs(ref - data['out']).max() / np.abs(data['out']).max()
    print('%s on the golden input %s: float32 vs GluonCV golden output, max rel %.2g'
          % (args.model, 'x'.join(map(str, x.shape)), golden_rel))
    rng = np.random.RandomState(0)
    shape = (args.calib_batch_size,) + x.shape[1:]
    calib = [mx.nd.array(rng.normal(x.mean(), x.std(), shape)) for _ in range(args.calib_batches)]
    rows = []
    for path in args.paths:
        start = time.perf_counter()
        out = run_path(path, net, x, calib)
        if out is None:
            print('%-13s skipped (onnxruntime not installed)' % path)
            continue
        row = dict(model=args.model, path=path, build_s=round(time.perf_counter() - start, 1),
                   **compare(out, ref))
        rows.append(row)
        print_row('{path:13s} max_rel {max_rel:.3e}  mean_rel {mean_rel:.3e}  argmax agreement '
                  '{argmax:.4f}  ({build_s:.1f} s)', row)
    if args.csv:
        write_csv(args.csv, rows, FIELDS)
    return rows


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
