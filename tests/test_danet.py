"""DANet: GluonCV's golden outputs, outputs by mode, any input size, optimization (ONNX
export: test_onnx_export.py)."""
import json
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

import gluonseg
from gluonseg.engine.loss import SegmentationLoss
from gluonseg.model_zoo.danet import ChannelAttention, DANet, PositionAttention
from gluonseg.model_zoo.segbase import set_reproducible_gradients
from model_checks import (MAX_RELATIVE_ERROR, MIN_ARGMAX_AGREEMENT, argmax_agreement,
                          model_in_both_modes, relative_error)
from model_checks import scenes  # noqa: F401  (fixture)
from spec_utils import fill_golden_weights, golden, golden_shapes_models


def _graph_inputs(symbol_json):
    return {n['name'] for n in json.loads(symbol_json)['nodes'] if n['op'] == 'null'}


def _branch_classifier_params(net):
    return set(net.head.conv6.collect_params().keys()) | set(
        net.head.conv7.collect_params().keys())


@pytest.mark.parametrize('name', [
    'danet_resnet50_citys',
    pytest.param('danet_resnet101_citys', marks=pytest.mark.slow)])  # slow: about 15 s
def test_golden_outputs_match_gluoncv(name):
    data = golden(name)
    net = gluonseg.get_model(name, pretrained_base=False)
    fill_golden_weights(net)
    net.hybridize()
    x = mx.nd.array(data['input'])
    # GluonCV's order: the fused output, the position branch's, the channel branch's.
    for out, key in zip(net.all_outputs(x), ('out0', 'out1', 'out2')):
        assert relative_error(out.asnumpy(), data[key]) < 1e-4, key
    assert relative_error(net(x).asnumpy(), data['out0']) < 1e-4


small_net = model_in_both_modes('danet_resnet18_shapes')


def test_outputs_by_mode_at_any_input_size(small_net):
    net = small_net
    x = mx.nd.random.normal(shape=(2, 3, 97, 131))
    out = net(x)
    assert isinstance(out, mx.nd.NDArray) and out.shape == (2, 4, 97, 131)
    with autograd.record():
        outputs = net(x)
    assert isinstance(outputs, tuple) and len(outputs) == len(DANet.training_output_weights)
    assert all(o.shape == (2, 4, 97, 131) for o in outputs)
    # Back to inference: the same result as before training-mode calls (nothing changed).
    np.testing.assert_allclose(net(x).asnumpy(), out.asnumpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.all_outputs(x)[0].asnumpy(), out.asnumpy(), rtol=1e-5,
                               atol=1e-5)
    assert net.predict(x).shape == (2, 97, 131)


def test_hybridized_inference_graph_leaves_the_branch_classifiers_out(tmp_path):
    mx.random.seed(0)
    net = gluonseg.get_model('danet_resnet18_shapes', pretrained_base=False)
    assert set_reproducible_gradients(net) == 1
    x = mx.nd.random.normal(shape=(2, 3, 40, 48))
    label = mx.nd.array(np.random.RandomState(0).randint(0, 4, (2, 40, 48)))
    loss_fn = SegmentationLoss(output_weights=net.training_output_weights)
    net.hybridize(static_alloc=True)
    for _ in range(2):  # training, inference, then both again: a graph per mode
        with autograd.record():
            loss = loss_fn(net(x), label)
        loss.backward()
        for classifier in (net.head.conv6[0], net.head.conv7[0], net.head.conv8[0]):
            assert np.abs(classifier.weight.grad().asnumpy()).max() > 0
        with warnings.catch_warnings():
            warnings.simplefilter('error', UserWarning)  # no "parameter not used" warning
            assert isinstance(net(x), mx.nd.NDArray)
        inputs = _graph_inputs(net._cached_graph[1].tojson())
        assert not inputs & _branch_classifier_params(net)
        assert set(net.head.conv8.collect_params().keys()) <= inputs
    net.export(str(tmp_path / 'danet'))
    inputs = _graph_inputs((tmp_path / 'danet-symbol.json').read_text())
    assert not inputs & _branch_classifier_params(net)
    assert set(net.head.sa.collect_params().keys()) <= inputs


def test_attention_modules_start_as_the_identity():
    # gamma starts at 0 (the paper's initialization), so x passes unchanged.
    x = mx.nd.random.normal(shape=(2, 16, 5, 7))
    for module in (PositionAttention(16), ChannelAttention()):
        module.initialize()
        np.testing.assert_array_equal(module(x).asnumpy(), x.asnumpy())


def test_aux_head_is_refused():
    with pytest.raises(ValueError, match='no auxiliary FCN head'):
        DANet(4, backbone='resnet18', aux=True, pretrained_base=False)


@pytest.fixture(scope='module')
def golden_net():
    """danet_resnet18_shapes with the golden-rule weights, hybridized."""
    return golden_shapes_models(['danet'])['danet']


@pytest.mark.parametrize('dtype', ['float32', 'int8'])
def test_optimized_logits_stay_close_to_float32(golden_net, scenes, dtype):
    x, calib = scenes
    expected = golden_net(x).asnumpy()
    model = gluonseg.optimize(golden_net, dtype=dtype, calib_data=[calib])
    out = model(x).asnumpy()
    assert out.shape == expected.shape
    assert relative_error(out, expected) < MAX_RELATIVE_ERROR[dtype]
    assert argmax_agreement(out, expected) >= MIN_ARGMAX_AGREEMENT[dtype]
    nodes = json.loads(model._cached_graph[1].tojson())['nodes']
    convs = [n for n in nodes if n['op'] == '_sg_mkldnn_conv']
    assert 'Convolution' not in {n['op'] for n in nodes} and len(convs) > 20
    if dtype == 'int8':
        # Every convolution but the fused classifier (conv8) is quantized, the attention's too.
        quantized = [n for n in convs if n.get('attrs', {}).get('quantized') == 'true']
        assert len(quantized) == len(convs) - 1
        assert model.classifier.replace('_fwd', '_weight') == golden_net.head.conv8[0].weight.name

