"""ICNet: GluonCV's golden cascade outputs, any input size, outputs by mode, training
gradients, optimized inference (ONNX export: test_onnx_export.py)."""
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

import gluonseg
from gluonseg.engine.loss import SegmentationLoss
from gluonseg.model_zoo.icnet import ICNet
from gluonseg.model_zoo.segbase import set_reproducible_gradients
from model_checks import (MAX_RELATIVE_ERROR, MIN_ARGMAX_AGREEMENT, argmax_agreement,
                          assert_close, assert_same_gradients, model_in_both_modes,
                          relative_error, training_gradients)
from model_checks import scenes  # noqa: F401  (fixture)
from spec_utils import fill_golden_weights, golden


@pytest.mark.parametrize('name', [
    'icnet_resnet50_citys',
    pytest.param('icnet_resnet50_mhpv1', marks=pytest.mark.slow)])
def test_golden_outputs_match_gluoncv(name):
    data = golden(name)
    net = gluonseg.get_model(name, pretrained_base=False)
    fill_golden_weights(net)
    x = mx.nd.array(data['input'])
    outputs = net.cascade_outputs(x)
    assert len(outputs) == 4
    for i, out in enumerate(outputs):
        assert out.shape == data['out%d' % i].shape
        assert_close(out.asnumpy(), data['out%d' % i])
    # The hybridized inference graph gives the main output.
    net.hybridize()
    assert_close(net(x).asnumpy(), data['out0'])


@pytest.fixture(scope='module')
def net():
    """icnet_resnet18_shapes (4 classes) with the golden-rule weights."""
    net = gluonseg.get_model('icnet_resnet18_shapes', pretrained_base=False)
    fill_golden_weights(net)
    return net


random_net = model_in_both_modes('icnet_resnet18_shapes')


def test_any_input_size_gives_output_of_that_size(random_net):
    model = random_net
    for h, w in [(97, 131), (64, 96), (33, 50), (18, 18)]:
        assert model(mx.nd.random.normal(shape=(2, 3, h, w))).shape == (2, 4, h, w)
    # Nothing changed inside: the first size again gives the same result as a fresh call.
    x = mx.nd.random.normal(shape=(1, 3, 97, 131))
    first = model(x).asnumpy()
    model(mx.nd.random.normal(shape=(1, 3, 40, 72)))
    np.testing.assert_allclose(model(x).asnumpy(), first, rtol=1e-5, atol=1e-5)
    # The cascade follows the input: about 1/4, 1/8, 1/16 of any size.
    shapes = [o.shape[2:] for o in model.cascade_outputs(x)]
    assert shapes == [(97, 131), (26, 34), (13, 17), (6, 9)]


def test_inference_returns_the_main_output_and_training_the_four(net):
    net.hybridize()
    x = mx.nd.random.normal(shape=(2, 3, 48, 64))
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)  # no "parameter unused" for the cascade
        expected = net(x)
    assert isinstance(expected, mx.nd.NDArray) and expected.shape == (2, 4, 48, 64)
    assert len(net.training_output_weights) == 4
    label = mx.nd.array(np.random.RandomState(0).randint(0, 4, size=(2, 48, 64)))
    loss_fn = SegmentationLoss(output_weights=net.training_output_weights)
    with autograd.record():
        outputs = net(x)
        loss = loss_fn(outputs, label)
    loss.backward()
    assert isinstance(outputs, tuple) and len(outputs) == 4
    assert all(o.shape == (2, 4, 48, 64) for o in outputs)
    # The main output is the 1/4 output resized to the input: the same values.
    np.testing.assert_array_equal(outputs[0].asnumpy(), outputs[1].asnumpy())
    # The 1/8 and 1/16 outputs (cascade label guidance) reach their classifiers.
    for cff in (net.head.cff_12, net.head.cff_24):
        assert np.abs(cff.conv_low_cls.weight.grad().asnumpy()).max() > 0
    # Back at inference, the inference graph again (BatchNorm statistics moved while
    # training: compare with an imperative inference now).
    after = net(x)
    assert isinstance(after, mx.nd.NDArray)
    assert_close(after.asnumpy(), net.cascade_outputs(x)[0].asnumpy(), limit=1e-5)


def test_cascade_outputs_in_training_mode_are_the_training_outputs_before_resizing(net):
    net.hybridize(active=False)
    x = mx.nd.random.normal(shape=(1, 3, 40, 56))
    results = []
    for call in (net, net.cascade_outputs):
        mx.random.seed(3)  # the same dropout mask
        with autograd.record():
            results.append([o.asnumpy() for o in call(x)])
    training, cascade = results
    np.testing.assert_array_equal(training[0], cascade[0])
    for out, small in zip(training[1:], cascade[1:]):
        resized = mx.nd.contrib.BilinearResize2D(mx.nd.array(small), like=x, mode='like',
                                                 align_corners=True)
        np.testing.assert_array_equal(out, resized.asnumpy())


def test_reproducible_and_hybridized_training_gradients_equal_the_plain_ones():
    mx.random.seed(0)
    model = gluonseg.get_model('icnet_resnet18_shapes', pretrained_base=False)
    # Large enough for BatchNorm statistics over more than 1x1 maps at 1/32 (smaller inputs
    # make the batch variance, and so the gradients, degenerate).
    x = mx.nd.random.normal(shape=(2, 3, 96, 128))
    label = mx.nd.array(np.random.RandomState(0).randint(0, 4, size=(2, 96, 128)))
    loss_fn = SegmentationLoss(output_weights=model.training_output_weights)

    def gradients():
        return training_gradients(model, lambda outputs: loss_fn(outputs, label), x,
                                  seed=1)  # the same dropout mask
    plain = gradients()
    # The network, its head, both fusion units and the pyramid.
    assert set_reproducible_gradients(model) == 5
    runs = [gradients()]
    model.hybridize(static_alloc=True)
    runs.append(gradients())
    for grads in runs:
        assert_same_gradients(grads, plain)


def test_bad_input_and_aux_are_refused(net):
    with pytest.raises(ValueError, match='at least 18x18'):
        net(mx.nd.zeros((1, 3, 17, 64)))
    with pytest.raises(ValueError, match='at least 18x18'):
        net.cascade_outputs(mx.nd.zeros((3, 64, 64)))
    with pytest.raises(ValueError, match='no auxiliary head'):
        ICNet(4, backbone='resnet18', aux=True, pretrained_base=False)


@pytest.mark.parametrize('dtype', ['float32', 'int8'])
def test_optimized_logits_stay_close_to_float32(net, scenes, dtype):
    net.hybridize()
    x, calib = scenes
    expected = net(x).asnumpy()
    out = gluonseg.optimize(net, dtype, calib_data=[calib])(x).asnumpy()
    assert out.shape == expected.shape
    error = relative_error(out, expected)
    assert error < MAX_RELATIVE_ERROR[dtype], 'relative error %.3g' % error
    assert argmax_agreement(out, expected) >= MIN_ARGMAX_AGREEMENT[dtype]
    if dtype == 'int8':
        assert error > 1e-4, 'no reduced precision visible'

