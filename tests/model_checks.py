"""Checks shared by the model families' tests: errors against a reference output, the bounds
optimized inference keeps, training gradients, Shapes scenes, onnxruntime sessions and the
narrow WideResNet-38."""
import contextlib

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

import gluonseg
from gluonseg.data.shapes import ShapesSegmentation
from gluonseg.data.transforms import normalize_image
from gluonseg.model_zoo.wideresnet import WideResNet38

# Max |optimized - float32| / max |float32| over the logits, and the least share of pixels
# whose class (argmax) agrees with float32, bounded by the number formats over the ~20 layers
# of a ResNet-18 model: fusion keeps float32 arithmetic (round-off 6e-8 per operation) and
# only reorders it; bfloat16 keeps 8 significant bits (round-off 2^-9 = 0.2% per value); int8
# keeps 255 levels per tensor (a step of 1/127 = 0.8% of its largest value). A pixel changes
# class only where its two best logits lie within that error of each other.
MAX_RELATIVE_ERROR = {'float32': 1e-5, 'bfloat16': 0.03, 'int8': 0.2}
MIN_ARGMAX_AGREEMENT = {'float32': 1.0, 'bfloat16': 0.98, 'int8': 0.95}

# Stages of a narrow WideResNet-38 (WideResNet38.stages): every kind of unit (identity and
# projected shortcut, two 3x3 and bottleneck convolutions, stride, dilations 2 and 4,
# dropout) with few channels, so that int8 quantization and ONNX export, which copy the
# weights several times (beyond 3 GB of memory for the 137M values), take seconds.
NARROW_STAGES = ((2, (16, 16), 1, 1, 0.0),
                 (1, (32, 32), 1, 1, 0.0),
                 (2, (32, 32), 2, 1, 0.0),
                 (1, (32, 64), 1, 2, 0.0),
                 (1, (32, 64, 128), 1, 4, 0.3),
                 (1, (64, 128, 256), 1, 4, 0.5))


def relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def argmax_agreement(actual, expected):
    return float((actual.argmax(axis=1) == expected.argmax(axis=1)).mean())


def assert_close(actual, expected, limit=1e-4):
    """Relative error below ``limit`` (1e-4: what the golden tests ask of every family)."""
    error = relative_error(actual, expected)
    assert error < limit, 'relative error %g' % error


def training_gradients(net, loss_of, x, seed=None):
    """``{name: gradient}`` of every trained parameter of ``net`` (named as
    save_parameters() names them) after one backward pass of ``loss_of(net(x))``; ``seed``
    fixes the dropout masks."""
    if seed is not None:
        mx.random.seed(seed)
    with autograd.record():
        loss = loss_of(net(x))
    loss.backward()
    return {name: param.grad().asnumpy()
            for name, param in net._collect_params_with_prefix().items()
            if param.grad_req != 'null'}


def assert_same_gradients(actual, expected):
    """Every gradient of ``expected`` within rtol 1e-4 and 1e-5 of its largest value."""
    for name, grad in expected.items():
        np.testing.assert_allclose(actual[name], grad, rtol=1e-4,
                                   atol=1e-5 * np.abs(grad).max(), err_msg=name)


@pytest.fixture(scope='module')
def scenes():
    """8 normalized 96x96 Shapes scenes: 4 to evaluate on, 4 to calibrate with."""
    dataset = ShapesSegmentation('val', size=(96, 96))
    images = np.stack([normalize_image(dataset[i][0]) for i in range(8)])
    return mx.nd.array(images[:4]), mx.nd.array(images[4:])


def model_in_both_modes(name):
    """A module fixture: the registered ``name`` with random weights (seed 0), imperative,
    then hybridized."""
    @pytest.fixture(scope='module', params=[False, True], ids=['imperative', 'hybridized'])
    def fixture(request):
        mx.random.seed(0)
        net = gluonseg.get_model(name, pretrained_base=False)
        net.hybridize(request.param)
        return net
    return fixture


@contextlib.contextmanager
def narrow_wideresnet(stages=NARROW_STAGES):
    """Networks built in the block get a WideResNet-38 with ``stages``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WideResNet38, 'stages', stages)
        yield


def import_onnx():
    """``(onnx, onnxruntime)``, or the calling test is skipped, saying how to install them.

    onnxruntime's Python 3.11 wheels declare numpy>=1.24.2, which MXNet 1.9.1 cannot import,
    so pip cannot install it with gluonseg's extras; it runs correctly beside numpy 1.23.5
    when installed with `pip install --no-deps onnxruntime==1.15.1`.
    """
    onnx = pytest.importorskip(
        'onnx', reason='onnx is not installed: pip install -e ".[onnx]" (onnx==1.14.1)')
    ort = pytest.importorskip(
        'onnxruntime', reason='onnxruntime is not installed: pip install --no-deps '
                              'onnxruntime==1.15.1 (its wheels declare numpy>=1.24.2, which '
                              'MXNet 1.9.1 cannot import; it runs beside numpy 1.23.5)')
    return onnx, ort


def onnx_session(path):
    """An onnxruntime CPU session of the model file ``path``."""
    _, ort = import_onnx()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # dynamic shapes make the memory planner chatty
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
