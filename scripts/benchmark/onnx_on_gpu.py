"""Run gluonseg's ONNX exports where there is no MXNet (a GPU through PyTorch) and compare.

Two steps on two machines::

    python scripts/benchmark/onnx_on_gpu.py pack BUNDLE   # with MXNet: export, drop the weights
    python scripts/benchmark/onnx_on_gpu.py run BUNDLE    # without MXNet: onnx, torch, onnx2torch

A published-architecture graph holds hundreds of MB of weights, more than is worth carrying to
another machine, so ``pack`` keeps each graph with its weight tensors emptied, the
``save_parameters()`` key of each, and GluonCV's golden logits (tests/data/golden). ``run``
refills every weight by the golden rule (tests/spec_utils.golden_fill, NumPy's legacy
RandomState, identical on every NumPy version), converts the graph to PyTorch with onnx2torch,
and prints, per model: the relative error of the GPU logits to GluonCV's (strict float32:
TF32 off), the same for onnxruntime on the CPU when installed, and the GPU latency at a few
batch sizes in float32 and TF32.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tests'))
from spec_utils import golden, golden_fill  # noqa: E402  (NumPy only: runs without MXNet)

MODELS = ('deeplab_resnet101_voc',)
LATENCY_SHAPES = ((1, 3, 512, 512), (8, 3, 512, 512))


def pack(bundle, models):
    import onnx

    import gluonseg
    from gluonseg.model_zoo.onnx_export import export_onnx
    from spec_utils import fill_golden_weights

    os.makedirs(bundle, exist_ok=True)
    for name in models:
        net = gluonseg.get_model(name, pretrained_base=False)
        fill_golden_weights(net)
        net.hybridize()
        data = golden(name)
        path = os.path.join(bundle, name + '.onnx')
        export_onnx(net, path, input_shape=data['input'].shape)
        keys = {param.name: key for key, param in net._collect_params_with_prefix().items()}
        model = onnx.load(path)
        emptied = {}
        for tensor in model.graph.initializer:
            if tensor.name in keys:
                emptied[tensor.name] = keys[tensor.name]
                tensor.ClearField('raw_data')
                tensor.ClearField('float_data')
        onnx.save(model, path)
        with open(os.path.join(bundle, name + '.json'), 'w') as f:
            json.dump({'weights': emptied, 'shape': list(data['input'].shape)}, f)
        print('%s: %d weight tensors emptied, graph %.1f kB'
              % (name, len(emptied), os.path.getsize(path) / 1e3))


def refilled(bundle, name):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(os.path.join(bundle, name + '.onnx'))
    with open(os.path.join(bundle, name + '.json')) as f:
        keys = json.load(f)['weights']
    for tensor in model.graph.initializer:
        if tensor.name in keys:
            value = golden_fill(keys[tensor.name], tuple(tensor.dims))
            tensor.CopyFrom(numpy_helper.from_array(value, tensor.name))
    return model


def relative_error(out, expected):
    return float(np.abs(out - expected).max() / np.abs(expected).max())


def run(bundle, models, repeats):
    import torch
    from onnx2torch import convert

    device = torch.device('cuda')
    print('torch %s, %s' % (torch.__version__, torch.cuda.get_device_name(device)))
    for name in models:
        model = refilled(bundle, name)
        data = golden(name)
        try:
            import onnxruntime
            session = onnxruntime.InferenceSession(model.SerializeToString(),
                                                   providers=['CPUExecutionProvider'])
            (cpu,) = session.run(None, {'data': data['input']})
            print('%s onnxruntime %s CPU: relative error to GluonCV %.2e'
                  % (name, onnxruntime.__version__, relative_error(cpu, data['out'])))
        except ImportError:
            print('%s: onnxruntime not installed, CPU check skipped' % name)
        net = convert(model).eval().to(device)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        with torch.no_grad():
            gpu = net(torch.from_numpy(data['input']).to(device)).cpu().numpy()
        print('%s PyTorch GPU float32: relative error to GluonCV %.2e, shape %s'
              % (name, relative_error(gpu, data['out']), gpu.shape))
        for tf32 in (False, True):
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
            for shape in LATENCY_SHAPES:
                x = torch.randn(*shape, device=device)
                with torch.no_grad():
                    for _ in range(3):
                        net(x)
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    for _ in range(repeats):
                        net(x)
                    torch.cuda.synchronize()
                seconds = (time.perf_counter() - start) / repeats
                print('%s GPU %s batch %s: %.2f ms per batch, %.1f images/s'
                      % (name, 'TF32' if tf32 else 'float32', 'x'.join(map(str, shape)),
                         seconds * 1e3, shape[0] / seconds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('step', choices=('pack', 'run'))
    parser.add_argument('bundle', help='folder of the packed graphs')
    parser.add_argument('--models', nargs='+', default=list(MODELS))
    parser.add_argument('--repeats', type=int, default=20, help='timed calls per latency')
    args = parser.parse_args(argv)
    if args.step == 'pack':
        pack(args.bundle, args.models)
    else:
        run(args.bundle, args.models, args.repeats)


if __name__ == '__main__':
    main()
