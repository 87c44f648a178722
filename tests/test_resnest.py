"""ResNeSt classifiers and DeepLabV3 on a dilated ResNeSt: GluonCV's golden outputs, any input
size and int8 optimization (ONNX export: test_onnx_export.py).

(The layouts and SHA-1s of the published files are checked with the other families in
test_model_zoo.py.)
"""
import json
import time

import mxnet as mx
import numpy as np
import pytest

import gluonseg
from gluonseg.data.shapes import ShapesSegmentation
from gluonseg.data.transforms import normalize_image
from gluonseg.model_zoo.model_store import ModelStoreError
from gluonseg.model_zoo.resnest import resnest
from gluonseg.model_zoo.segbase import parse_backbone, resize_like
from gluonseg.utils import download
from gluonseg.utils.mxnet_compat import cached_graph
from model_checks import (MAX_RELATIVE_ERROR, MIN_ARGMAX_AGREEMENT, argmax_agreement,
                          assert_close, relative_error)
from spec_utils import fill_golden_weights, golden

DEEPER = [101, 200, 269]  # their golden tests build 30M to 130M parameters: slow


def golden_net(name):
    net = gluonseg.get_model(name, pretrained_base=False)
    fill_golden_weights(net)
    return net


def check_deeplab_golden(net, name):
    data = golden(name)
    x = mx.nd.array(data['input'])
    assert_close(net(x).asnumpy(), data['out0'])
    # Inference leaves the auxiliary head out; run it on its own.
    aux = resize_like(mx.nd, net.auxlayer(net.base_forward(x)[0]), x)
    assert_close(aux.asnumpy(), data['out1'])


@pytest.fixture(scope='module')
def deeplab50():
    """deeplab_resnest50_ade with the golden-rule weights; each test sets its mode."""
    return golden_net('deeplab_resnest50_ade')


@pytest.mark.parametrize('depth', [50] + [pytest.param(d, marks=pytest.mark.slow)
                                          for d in DEEPER])
def test_classifier_gives_gluoncvs_golden_logits(depth):
    name = 'resnest%d' % depth
    net = golden_net(name)
    net.hybridize()
    data = golden(name)
    assert_close(net(mx.nd.array(data['input'])).asnumpy(), data['out0'])


# The imperative run is slow-only: it adds about 0.3 GB to the default run's memory.
@pytest.mark.parametrize('hybridize', [pytest.param(False, marks=pytest.mark.slow), True])
def test_deeplab_resnest50_gives_gluoncvs_golden_outputs(deeplab50, hybridize):
    deeplab50.hybridize(hybridize)
    check_deeplab_golden(deeplab50, 'deeplab_resnest50_ade')


@pytest.mark.slow
@pytest.mark.parametrize('depth', DEEPER)
def test_deeper_deeplab_resnests_give_gluoncvs_golden_outputs(depth):
    name = 'deeplab_resnest%d_ade' % depth
    net = golden_net(name)
    net.hybridize()
    check_deeplab_golden(net, name)


def test_output_has_the_input_size_hybridized_or_not(deeplab50):
    x = mx.nd.array(np.random.RandomState(0).uniform(-2, 2, (1, 3, 97, 131)))
    outputs = []
    for hybridize in (False, True):
        deeplab50.hybridize(hybridize)
        outputs.append(deeplab50(x).asnumpy())
        assert outputs[-1].shape == (1, 150, 97, 131)
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # quantizing the 44 M-value model holds about 1.1 GB more for a while
def test_int8_stays_close_to_float32(deeplab50):
    dataset = ShapesSegmentation('val', size=(64, 64))
    images = mx.nd.array(np.stack([normalize_image(dataset[i][0]) for i in range(6)]))
    x, calib = images[:3], images[3:]
    deeplab50.hybridize()
    expected = deeplab50(x).asnumpy()
    model = gluonseg.optimize(deeplab50, 'int8', calib_data=[calib])
    out = model(x)
    assert out.dtype == np.float32 and out.shape == expected.shape
    error = relative_error(out.asnumpy(), expected)
    agreement = argmax_agreement(out.asnumpy(), expected)
    assert 1e-4 < error < MAX_RELATIVE_ERROR['int8'], 'relative error %.3g' % error
    assert agreement >= MIN_ARGMAX_AGREEMENT['int8'], 'argmax agreement %.4f' % agreement
    # Every convolution but the classifier is int8, the split attention's 1x1 ones too.
    nodes = json.loads(cached_graph(model)[1].tojson())['nodes']
    convs = [n for n in nodes if n['op'] == '_sg_mkldnn_conv']
    quantized = [n for n in convs if n.get('attrs', {}).get('quantized') == 'true']
    assert len(quantized) == len(convs) - 1 == 94



def test_unknown_depth_is_named():
    assert parse_backbone('resnest101') == (101, 'resnest')
    with pytest.raises(ValueError, match=r"'resnest77'.*\[50, 101, 200, 269\]"):
        parse_backbone('resnest77')
    with pytest.raises(ValueError, match=r'ResNeSt depth 77 .*\[50, 101, 200, 269\]'):
        resnest(77)


def test_offline_pretrained_base_names_the_resnest_backbone(closed_port_url, monkeypatch,
                                                            tmp_path):
    monkeypatch.setattr(download, 'BACKOFF_BASE', 1.0)
    monkeypatch.setenv('GLUONSEG_REPO_URL', closed_port_url)
    start = time.monotonic()
    with pytest.raises(ModelStoreError) as info:
        gluonseg.get_model('deeplab_resnest50_ade', root=str(tmp_path))
    assert time.monotonic() - start < 5.0
    message = str(info.value)
    assert message.startswith("pretrained_base=True asks for the ImageNet weights of the "
                              "backbone 'resnest50'"), message
    assert closed_port_url + 'gluon/models/resnest50-bcfefe1d.zip' in message
