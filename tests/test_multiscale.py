"""MultiScaleEvaluator: windows, flips and scales combine as documented."""
import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import gluonseg
from gluonseg.model_zoo.multiscale import MultiScaleEvaluator


def pointwise_net(nclass=3, seed=0):
    """A 1x1 convolution: its output at a pixel depends on that pixel only, so windows and
    flips must not change it."""
    mx.random.seed(seed)
    net = nn.Conv2D(nclass, 1, in_channels=3)
    net.initialize(mx.init.Normal(1.0))
    return net


def test_windows_reassemble_the_full_image_for_a_pointwise_net():
    net = pointwise_net()
    x = mx.nd.random.normal(shape=(2, 3, 50, 70))
    evaluator = MultiScaleEvaluator(net, base_size=70, crop_size=32, scales=[1.0], flip=False)
    expected = net(x).softmax(axis=1).asnumpy()
    np.testing.assert_allclose(evaluator(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)


def test_gluoncv_combination_is_exp_of_summed_logits():
    net = pointwise_net()
    x = mx.nd.random.normal(shape=(1, 3, 40, 30))
    evaluator = MultiScaleEvaluator(net, base_size=40, crop_size=24, scales=[1.0], flip=True,
                                    combine='gluoncv')
    # A pointwise net is flip-equivariant: logits + flipped logits = 2 * logits.
    expected = np.exp(2 * net(x).asnumpy())
    np.testing.assert_allclose(evaluator(x).asnumpy(), expected, rtol=1e-4)


def test_scores_come_back_at_the_original_size_for_every_scale():
    net = pointwise_net()
    x = mx.nd.random.normal(shape=(2, 3, 37, 53))
    evaluator = MultiScaleEvaluator(net, base_size=48, crop_size=32)
    scores = evaluator(x)
    assert scores.shape == (2, 3, 37, 53)
    # softmax averages stay probabilities
    np.testing.assert_allclose(scores.sum(axis=1).asnumpy(), 1.0, rtol=1e-5)
    assert evaluator.predict(x).shape == (2, 37, 53)


def test_batch_equals_images_one_by_one_and_lists_of_sizes_work():
    mx.random.seed(1)
    net = gluonseg.get_model('psp_resnet50_voc', pretrained_base=False, backbone='resnet18',
                             nclass=4)
    evaluator = MultiScaleEvaluator(net, base_size=64, crop_size=48, scales=[0.75, 1.25])
    x = mx.nd.random.normal(shape=(2, 3, 40, 64))
    batch = evaluator(x).asnumpy()
    single = [evaluator(x[i:i + 1]).asnumpy()[0] for i in range(2)]
    np.testing.assert_allclose(batch, np.stack(single), rtol=1e-4, atol=1e-5)
    sizes = evaluator.predict([mx.nd.zeros((3, 30, 20)), mx.nd.zeros((1, 3, 50, 41))])
    assert [s.shape for s in sizes] == [(30, 20), (50, 41)]


def test_unknown_combination_is_rejected():
    with pytest.raises(ValueError, match='combine'):
        MultiScaleEvaluator(pointwise_net(), combine='mean')
