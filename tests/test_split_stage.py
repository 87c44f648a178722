"""C4's stage 4 split around RoIAlign (split_stage.py): its first 1x1 convs on the map, the
rest on the pooled RoIs, the values of the whole stage on pooled RoIs."""
import copy
import re

import mxnet as mx
import numpy as np
import pytest

from gluonseg.model_zoo.rcnn import fast_roi_align
from gluonseg.model_zoo.segbase import build_backbone
from gluonseg.model_zoo.optimize import optimize_mask_rcnn
from gluonseg.model_zoo.rcnn.inference import LeanDetector
from gluonseg.model_zoo.rcnn.mask_rcnn import mask_rcnn
from gluonseg.model_zoo.rcnn.split_stage import pool_entry_maps, split_stage


@pytest.fixture(scope='module')
def small_c4():
    """A ResNet-50 C4 Mask R-CNN (the published C4 architecture) with random weights."""
    mx.random.seed(7)
    net = mask_rcnn(50, 'v1b', classes=('a', 'b', 'c'), rpn_test_post_nms=40,
                    rpn_channels=64, mask_channels=32)
    net.initialize(mx.init.Xavier(magnitude=0.5))
    randomize_norms(net)
    return net


def randomize_norms(block, seed=0):
    """Frozen BatchNorms that are not the identity (the initializer's are): their offsets
    are what RoIAlign scales down off the map."""
    rng = np.random.RandomState(seed)
    for name, param in sorted(block.collect_params().items()):
        shape = param.shape
        if name.endswith('_gamma') or name.endswith('_running_var'):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, shape)))
        elif name.endswith('_beta') or name.endswith('_running_mean'):
            param.set_data(mx.nd.array(rng.normal(0, 0.2, shape)))


def test_only_a_bottleneck_with_a_1x1_conv_shortcut_splits(small_c4):
    extractor = small_c4.roi_align
    assert split_stage(None, extractor) is None  # FPN: no stage 4 on the RoIs
    c4_resnet18 = mask_rcnn(18, 'v1b', classes=('a',), rpn_channels=16, mask_channels=16)
    # basic block: a 3x3 conv first
    assert split_stage(c4_resnet18.top_features, c4_resnet18.roi_align) is None
    entry, _ = split_stage(small_c4.top_features, extractor)
    assert entry.shortcut_pooling == dict(output_size=14, sample_ratio=2, bin_step=2)
    adaptive = copy.copy(extractor)
    adaptive.sample_ratio = 0  # v1d's average pool then needs the same points: fixed ratio
    assert split_stage(stage_of('v1d'), adaptive) is None
    entry, _ = split_stage(stage_of('v1d'), extractor)
    assert entry.shortcut_pooling == dict(output_size=7, sample_ratio=4)


def stage_of(variant):
    """A C4 ResNet-50's stage 4 (as ``top_features``) of ``variant``, random weights."""
    body = build_backbone('resnet50_%s' % variant, dilated=False,
                          norm_kwargs={'use_global_stats': True})
    body.initialize(mx.init.Xavier(magnitude=0.5))
    randomize_norms(body)
    top_features = mx.gluon.nn.HybridSequential()
    top_features.add(body.layer4)
    return top_features


@pytest.mark.parametrize('variant', ['v1b', 'v1d'])
def test_entry_then_tail_on_pooled_rois_is_the_stage_on_pooled_rois(small_c4, variant):
    top_features = small_c4.top_features if variant == 'v1b' else stage_of(variant)
    extractor = small_c4.roi_align
    entry, tail = split_stage(top_features, extractor)
    # the same parameters, none new
    assert set(entry.collect_params()) | set(tail.collect_params()) == set(
        top_features.collect_params())
    rng = np.random.RandomState(0)
    feature = mx.nd.array(rng.randn(1, 1024, 9, 12).astype('f'))
    # inside the 144x192 image the map covers, the last one reaching its far corner
    rois = mx.nd.array([[0, 3.5, 7.25, 120.5, 100], [0, 0, 0, 191, 143],
                        [0, 60, 20, 66, 31], [0, 150.5, 90, 191, 143]])
    with mx.autograd.predict_mode():
        expected = top_features(fast_roi_align.roi_align(
            feature, rois, extractor.output_size[0], 1.0 / 16, extractor.sample_ratio))
        maps = entry(feature)
        conv1_pooled, shortcut_pooled = pool_entry_maps(maps, rois, extractor,
                                                        entry.shortcut_pooling)
        out = tail(conv1_pooled, shortcut_pooled)
        # not by accident: pooled like the conv1 map instead, the shortcut is wrong
        wrong = tail(conv1_pooled, fast_roi_align.roi_align(maps[1], rois, 7, 1.0 / 16, 2))
    expected, out, wrong = expected.asnumpy(), out.asnumpy(), wrong.asnumpy()
    assert out.shape == expected.shape == (4, 2048, 7, 7)
    # The same sums in another order: equal up to float32 rounding.
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    assert np.abs(wrong - expected).max() > 1e-2 * np.abs(expected).max()


def test_off_the_map_the_split_differs_so_the_detections_masks_take_the_whole_stage(
        small_c4):
    """A detection's box can leave the image (its offsets are not clipped); there
    RoIAlign's weights sum to less than 1 and the split is not the stage."""
    entry, tail = split_stage(small_c4.top_features, small_c4.roi_align)
    x = mx.nd.array(np.random.RandomState(3).randn(1, 3, 96, 128).astype('f'))
    off = mx.nd.array([[0, -60, -50, 40, 30], [0, 90, 70, 200, 150]])  # map: 6x8 cells
    extractor = small_c4.roi_align
    with mx.autograd.predict_mode():
        feature = small_c4.features(x)
        whole = small_c4.top_features(fast_roi_align.roi_align(
            feature, off, 14, 1.0 / 16)).asnumpy()
        split = tail(*pool_entry_maps(entry(feature), off, extractor,
                                      entry.shortcut_pooling)).asnumpy()
    assert np.abs(split - whole).max() > 1e-2 * np.abs(whole).max()
    # The optimized model's mask head gets the network's values for such boxes.
    fast = optimize_mask_rcnn(small_c4)
    lean = LeanDetector(small_c4)
    ids = mx.nd.array([[[0], [2]]])
    boxes = off[:, 1:].expand_dims(0)
    with mx.autograd.predict_mode():
        expected = lean.detect_masks(lean.backbone(x), ids, boxes, [(0, 2)]).asnumpy()
        masks = fast.detect_masks(fast.backbone(x), ids, boxes, [(0, 2)]).asnumpy()
    np.testing.assert_allclose(masks, expected, atol=1e-4)


@pytest.mark.parametrize('dtype', ['float32', 'int8'])
def test_optimized_c4_runs_stage_4_split(small_c4, dtype):
    x = mx.nd.array(np.random.RandomState(1).randn(1, 3, 96, 128).astype('f'))
    calib = [mx.nd.array(np.random.RandomState(2).randn(1, 3, 96, 128).astype('f'))]
    fast = optimize_mask_rcnn(small_c4, dtype, calib_data=calib if dtype == 'int8' else None)
    assert fast.stage_entry is not None and fast.shortcut_pooling['bin_step'] == 2
    lean = [o.asnumpy() for o in small_c4.detect(x, 0.0, 30)]
    ids, scores, boxes, masks = [o.asnumpy() for o in fast.detect(x, 0.0, 30)]
    assert ids.shape == (1, 30, 1) and masks.shape == (1, 30, 14, 14)
    if dtype == 'float32':  # the detections of net.detect, up to float rounding
        np.testing.assert_array_equal(ids, lean[0])
        np.testing.assert_allclose(scores, lean[1], rtol=1e-4)
        np.testing.assert_allclose(boxes, lean[2], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(masks, lean[3], atol=1e-4)
    else:  # the tail is quantized, the entry (on the map) is not
        graph = fast.top_features._cached_graph[1].get_internals().list_outputs()
        assert any(re.match(r'quantized_sg_mkldnn_conv', n) for n in graph)
        entry_graph = fast.stage_entry._cached_graph[1].get_internals().list_outputs()
        assert not any('quantized' in n for n in entry_graph)
        assert (ids >= 0).all() and np.isfinite(boxes).all()


def test_a_stage_entry_needs_a_splittable_stage():
    c4_resnet18 = mask_rcnn(18, 'v1b', classes=('a',), rpn_channels=16, mask_channels=16)
    with pytest.raises(ValueError, match='stage_entry needs a C4 model'):
        LeanDetector(c4_resnet18, stage_entry=lambda x: x)
