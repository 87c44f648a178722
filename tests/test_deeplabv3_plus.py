"""DeepLabV3+ on WideResNet-38 (VPLR, ``deeplab_v3b_plus_wideresnet_*``): GluonCV's golden
logits, any input size, the engine's contract, optimized inference (ONNX export:
test_onnx_export.py).

The network has 137M values: one instance with the golden weights is built per module (about
10 s) and only run at inference (its gradient buffers are dropped). Quantization and training
gradients are checked on a narrow twin (model_checks.narrow_wideresnet): the same graph with
few channels.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

import gluonseg
from gluonseg.engine.trainer import set_head_lr_mult
from gluonseg.model_zoo.deeplabv3_plus import DeepLabV3Plus
from gluonseg.model_zoo.multiscale import MultiScaleEvaluator
from gluonseg.model_zoo.optimize import optimize
from gluonseg.model_zoo.registry import model_info
from gluonseg.model_zoo.segbase import set_reproducible_gradients
from model_checks import (MAX_RELATIVE_ERROR, NARROW_STAGES, argmax_agreement,
                          narrow_wideresnet, relative_error, training_gradients)
from spec_utils import fill_golden_weights, golden

NAME = 'deeplab_v3b_plus_wideresnet_citys'


@pytest.fixture(scope='module')
def net():
    """The Cityscapes network with GluonCV's golden-rule weights, not hybridized."""
    # Built by its registry record and initialized with zeros, which the golden values
    # replace: get_model's random initialization of 137M values takes longer than the test.
    model = model_info(NAME).builder(pretrained_base=False, root=None)
    model.initialize(mx.init.Zero())
    fill_golden_weights(model)
    model.collect_params().setattr('grad_req', 'null')
    return model


@pytest.fixture(scope='module')
def golden_input():
    return mx.nd.array(golden(NAME)['input'])


def test_golden_output_matches_gluoncv(net, golden_input):
    net.hybridize()
    try:
        out = net(golden_input).asnumpy()
    finally:
        net.hybridize(False)
    expected = golden(NAME)['out0']
    assert out.shape == expected.shape == (1, 19, 48, 64)
    error = relative_error(out, expected)
    assert error < 1e-4, 'relative error %g' % error


@pytest.mark.parametrize('hybridize', [False, True])
def test_any_input_size_gives_output_of_that_size(net, hybridize):
    x = mx.nd.array(np.random.RandomState(1).uniform(-2, 2, (1, 3, 97, 131)))
    net.hybridize(hybridize)
    try:
        out = net(x)
    finally:
        net.hybridize(False)
    assert out.shape == (1, 19, 97, 131)
    assert np.isfinite(out.asnumpy()).all()


def test_engine_contract(net, golden_input):
    """What the trainer, the evaluators and predict read: one output in every mode, nclass,
    aux, the head blocks, reproducible resizes that keep the output."""
    assert (net.nclass, net.aux, net.head_blocks()) == (19, False, [net.head])
    expected = net(golden_input).asnumpy()
    with autograd.train_mode():  # no auxiliary output while training either
        assert isinstance(net(golden_input), mx.nd.NDArray)
    names = set_head_lr_mult(net, 10.0)
    assert names and len(names) == len(net.head.collect_params().keys())
    try:
        # The network's final resize and the decoder's resize of the ASPP features.
        assert set_reproducible_gradients(net) == 2
        np.testing.assert_array_equal(net(golden_input).asnumpy(), expected)
    finally:
        set_reproducible_gradients(net, False)
        set_head_lr_mult(net, 1.0)


def test_predict_and_multiscale_evaluation(net):
    image = np.random.RandomState(2).randint(0, 256, (37, 50, 3)).astype(np.uint8)
    classes = net.predict(image)
    assert classes.shape == (37, 50) and classes.dtype == np.int32
    assert 0 <= classes.min() and classes.max() < 19
    x = net.preprocess(image)
    labels = MultiScaleEvaluator(net, base_size=48, crop_size=48, scales=(0.75, 1.0),
                                 flip=True).predict(x)
    assert labels.shape == (1, 37, 50)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='no auxiliary head'):
        DeepLabV3Plus(19, aux=True)
    with pytest.raises(ValueError, match="'resnet50'"):
        DeepLabV3Plus(19, backbone='resnet50')
    with pytest.raises(ValueError, match='no auxiliary head'):
        gluonseg.get_model(NAME, aux=True)


def test_fused_float32_inference_gives_the_same_logits(net, golden_input):
    model = optimize(net, dtype='float32')
    error = relative_error(model(golden_input).asnumpy(), net(golden_input).asnumpy())
    assert error < 1e-5, 'relative error %g' % error  # fusion only reorders float32 arithmetic


def build_narrow(nclass, stages=NARROW_STAGES):
    with narrow_wideresnet(stages):
        return DeepLabV3Plus(nclass)


@pytest.fixture(scope='module')
def narrow_net():
    """The narrow twin with golden-rule weights, hybridized."""
    model = build_narrow(19)
    model.initialize(mx.init.Zero())
    fill_golden_weights(model)
    model.hybridize()
    return model


@pytest.mark.parametrize('dtype', ['float32', 'int8'])
def test_optimized_inference_stays_close_to_float32(narrow_net, golden_input, dtype):
    calib = mx.nd.array(np.random.RandomState(3).uniform(-2, 2, (2, 3, 48, 64)))
    model = optimize(narrow_net, dtype=dtype, calib_data=[calib])
    expected = narrow_net(golden_input).asnumpy()
    out = model(golden_input).asnumpy()
    assert out.shape == expected.shape
    error = relative_error(out, expected)
    agreement = argmax_agreement(out, expected)
    assert error < MAX_RELATIVE_ERROR[dtype], 'relative error %g' % error
    assert agreement >= {'float32': 1.0, 'int8': 0.9}[dtype], 'argmax agreement %g' % agreement
    if dtype == 'int8':
        assert error > 1e-4  # the int8 arithmetic is really used
    small = mx.nd.array(np.random.RandomState(4).uniform(-2, 2, (1, 3, 37, 51)))
    assert model(small).shape == (1, 19, 37, 51)



def test_hybridized_training_gradients_equal_the_imperative_ones():
    # The decoder resizes the ASPP features like the mod2 features, which also feed mod3 and
    # the decoder: their gradient must survive a static_alloc graph (see resize_like).
    # Without dropout: the hybridized graph may draw other (equally valid) masks.
    mx.random.seed(0)
    net = build_narrow(3, stages=tuple(stage[:4] + (0.0,) for stage in NARROW_STAGES))
    net.initialize(mx.init.Xavier())
    set_reproducible_gradients(net)
    x = mx.nd.random.normal(shape=(2, 3, 40, 48))
    label = mx.nd.random.normal(shape=(2, 3, 40, 48))
    imperative = training_gradients(net, lambda out: (out * label).sum(), x)
    net.hybridize(static_alloc=True)
    hybridized = training_gradients(net, lambda out: (out * label).sum(), x)
    for name, grad in imperative.items():
        # float32 round-off through ~25 layers with batch statistics: about 3e-4.
        error = np.abs(hybridized[name] - grad).max() / np.abs(grad).max()
        assert error < 2e-3, '%s: relative error %.3g' % (name, error)
