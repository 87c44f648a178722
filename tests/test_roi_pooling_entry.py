"""RoIAlignExtractor is the R-CNN's one RoI-pooling entry: imperatively at inference it pools
each RoI on its own level (fast_roi_align), in a graph or while recording gradients it runs
contrib.ROIAlign on every level; both give the same features."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluonseg.model_zoo.rcnn import RoIAlignExtractor, fast_roi_align, fpn_levels

STRIDES = (4, 8, 16, 32)


def pyramid_and_rois(seed=0, count=40):
    rng = np.random.RandomState(seed)
    features = [mx.nd.array(rng.randn(2, 3, 640 // s, 768 // s)) for s in STRIDES]
    x1, y1 = rng.uniform(0, 300, count), rng.uniform(0, 200, count)
    sides = np.exp(rng.uniform(np.log(8), np.log(700), (2, count)))
    rois = np.stack([rng.randint(0, 2, count), x1, y1, x1 + sides[0], y1 + sides[1]], axis=1)
    # one RoI of side 480 (P5) and one of side 240 (P4) among the random ones
    rois[count // 2] = [1, 100, 50, 579, 529]
    rois[count // 3] = [0, 20, 30, 259, 269]
    return features, mx.nd.array(rois)


def graph_features(extractor, rois, features):
    """The extractor's graph (contrib.ROIAlign on every level), evaluated on the arrays."""
    names = ['f%d' % i for i in range(len(features))]
    out = extractor(mx.sym.var('rois'), *[mx.sym.var(n) for n in names])
    return out.eval(rois=rois, **dict(zip(names, features)))[0].asnumpy()


def test_the_rois_cover_every_level():
    # What the comparisons below rely on: RoIs on each of the four maps.
    _, rois = pyramid_and_rois()
    assert set(fpn_levels(mx.nd, rois).asnumpy()) == {2.0, 3.0, 4.0, 5.0}


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('use_numba', [True, False])
def test_inference_pooling_equals_the_graph_and_the_recorded_pooling(hybridize, use_numba,
                                                                       monkeypatch):
    if use_numba and not fast_roi_align.available():
        pytest.skip('numba is not installed (the fast extra)')
    if not use_numba:  # contrib.ROIAlign per level instead of the kernel
        monkeypatch.setattr(fast_roi_align, 'numba', None)
    features, rois = pyramid_and_rois()
    extractor = RoIAlignExtractor(7, STRIDES)
    expected = graph_features(extractor, rois, features)
    if hybridize:
        extractor.hybridize()
    inference = extractor(rois, *features).asnumpy()
    np.testing.assert_allclose(inference, expected, rtol=1e-5, atol=1e-6)
    for _ in range(2):  # a cached graph reuses its buffers on the second call
        with autograd.record():
            recorded = extractor(rois, *features)
        np.testing.assert_allclose(recorded.asnumpy(), expected, rtol=1e-5, atol=1e-6)


def test_recording_keeps_the_gradient_to_the_feature_maps():
    features, rois = pyramid_and_rois(1, 12)
    extractor = RoIAlignExtractor(7, STRIDES)
    for feature in features:
        feature.attach_grad()
    with autograd.record():
        total = extractor(rois, *features).sum()
    total.backward()
    assert sum(float(f.grad.abs().sum().asscalar()) for f in features) > 0


def test_pool_with_the_box_heads_average_pool_equals_pooling_the_graphs_output():
    features, rois = pyramid_and_rois(2)
    extractor = RoIAlignExtractor(14, STRIDES)
    expected = mx.nd.Pooling(mx.nd.array(graph_features(extractor, rois, features)),
                             kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type='avg')
    got = extractor.pool(rois, features, avg_pool=True)
    assert got.shape == (40, 3, 7, 7)
    np.testing.assert_allclose(got.asnumpy(), expected.asnumpy(), rtol=1e-5, atol=1e-6)


def test_gluoncv_quirk_pools_through_the_graph_also_at_inference():
    # Only the graph reproduces GluonCV's corrupted first RoI: P2 first, then P5 RoIs.
    features = [mx.nd.full((1, 2, 512 // s, 512 // s), 1.0) for s in STRIDES]
    rois = mx.nd.array([[0, 0, 0, 9, 9]] + [[0, 0, 0, 499, 499]] * 5)
    quirk = RoIAlignExtractor(7, STRIDES, gluoncv_quirk=True)
    assert (quirk.pool(rois, features).asnumpy()[0] == 0).any()
    fixed = RoIAlignExtractor(7, STRIDES).pool(rois, features).asnumpy()
    np.testing.assert_array_equal(fixed, np.ones_like(fixed))


def test_a_wrong_number_of_maps_is_refused_by_name():
    features, rois = pyramid_and_rois()
    with pytest.raises(ValueError, match='has 4 strides but got 2 feature maps'):
        RoIAlignExtractor(7, STRIDES).pool(rois, features[:2])
