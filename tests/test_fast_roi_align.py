"""The numba RoIAlign of the lean Mask R-CNN path gives contrib.ROIAlign's values."""
import mxnet as mx
import numpy as np
import pytest

from gluonseg.model_zoo.rcnn import fast_roi_align

needs_numba = pytest.mark.skipif(not fast_roi_align.available(),
                                 reason='numba is not installed (pip install gluonseg[fast])')


def random_rois(rng, count, images, height, width, stride, largest):
    """RoIs of every kind ROIAlign clamps: inside, across and beyond the borders, tiny
    (below one cell, even inverted), and large."""
    x1 = rng.uniform(-3 * stride, (width + 2) * stride, count)
    y1 = rng.uniform(-3 * stride, (height + 2) * stride, count)
    w = rng.uniform(-stride, largest, count)
    h = rng.uniform(-stride, largest, count)
    return np.stack([rng.randint(0, images, count), x1, y1, x1 + w, y1 + h], 1).astype('f')


@needs_numba
@pytest.mark.parametrize('channels,height,width,stride,pooled,sample_ratio', [
    (32, 13, 17, 16, 14, 2),    # C4-like
    (16, 40, 30, 4, 7, 2),      # an FPN level, the box head's 7x7
    (8, 9, 11, 8, 14, 0),       # adaptive sampling (ceil(roi size / bins) points)
    (8, 9, 11, 8, 5, 3),
])
def test_values_are_contrib_roialigns(channels, height, width, stride, pooled, sample_ratio):
    rng = np.random.RandomState(channels + pooled)
    feature = mx.nd.array(rng.randn(2, channels, height, width).astype('f'))
    rois = mx.nd.array(random_rois(rng, 300, 2, height, width, stride, 12 * stride))
    expected = mx.nd.contrib.ROIAlign(feature, rois, pooled_size=(pooled, pooled),
                                      spatial_scale=1.0 / stride, sample_ratio=sample_ratio,
                                      aligned=False).asnumpy()
    out = fast_roi_align.roi_align(feature, rois, pooled, 1.0 / stride, sample_ratio)
    assert out.shape == expected.shape and out.context == feature.context
    # Same points, weights and summation order in float32: equal, not just close.
    np.testing.assert_array_equal(out.asnumpy(), expected)


@needs_numba
def test_a_negative_batch_index_gives_zeros_and_other_rois_are_unaffected():
    rng = np.random.RandomState(1)
    feature = mx.nd.array(rng.randn(1, 4, 8, 8).astype('f'))
    rois = mx.nd.array([[0, 2, 2, 40, 50], [-1, 0, 0, 30, 30], [0, 10, 4, 60, 30]])
    out = fast_roi_align.roi_align(feature, rois, 7, 1.0 / 8).asnumpy()
    assert (out[1] == 0).all()
    expected = mx.nd.contrib.ROIAlign(feature, rois[[0, 2]], pooled_size=(7, 7),
                                      spatial_scale=1.0 / 8, sample_ratio=2).asnumpy()
    np.testing.assert_array_equal(out[[0, 2]], expected)


def test_without_numba_it_is_contrib_roialign(monkeypatch):
    monkeypatch.setattr(fast_roi_align, 'numba', None)
    assert not fast_roi_align.available()
    rng = np.random.RandomState(2)
    feature = mx.nd.array(rng.randn(1, 3, 10, 12).astype('f'))
    rois = mx.nd.array(random_rois(rng, 20, 1, 10, 12, 8, 60))
    np.testing.assert_array_equal(
        fast_roi_align.roi_align(feature, rois, 14, 0.125).asnumpy(),
        mx.nd.contrib.ROIAlign(feature, rois, pooled_size=(14, 14), spatial_scale=0.125,
                               sample_ratio=2).asnumpy())


@needs_numba
def test_the_threads_split_the_rois_without_changing_them(monkeypatch):
    rng = np.random.RandomState(3)
    feature = mx.nd.array(rng.randn(2, 6, 12, 12).astype('f'))
    rois = mx.nd.array(random_rois(rng, 7, 2, 12, 12, 8, 80))
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    single = fast_roi_align.roi_align(feature, rois, 7, 0.125).asnumpy()
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    np.testing.assert_array_equal(fast_roi_align.roi_align(feature, rois, 7, 0.125).asnumpy(),
                                  single)


@needs_numba
def test_the_result_is_on_the_features_cpu_context():
    rng = np.random.RandomState(5)
    ctx = mx.cpu(1)
    feature = mx.nd.array(rng.randn(1, 3, 8, 8).astype('f'), ctx=ctx)
    rois = mx.nd.array([[0, 4, 4, 40, 30]], ctx=ctx)
    out = fast_roi_align.roi_align(feature, rois, 7, 0.125)
    assert out.context == ctx
    np.testing.assert_array_equal(
        out.asnumpy(), mx.nd.contrib.ROIAlign(feature, rois, pooled_size=(7, 7),
                                              spatial_scale=0.125, sample_ratio=2).asnumpy())


@needs_numba
def test_shared_maps_are_copied_once_per_level_used_and_give_the_same_values():
    rng = np.random.RandomState(6)
    strides = (4, 8, 16)
    maps = [mx.nd.array(rng.randn(1, 6, 64 // s, 80 // s).astype('f')) for s in strides]
    scales = [1.0 / s for s in strides]
    shared = fast_roi_align.ChannelsLastMaps(maps)
    for count in (30, 5):  # the box head's RoIs, then the mask head's
        rois = mx.nd.array(random_rois(rng, count, 1, 16, 20, 4, 60))
        level_rows = np.array_split(np.arange(count), [count // 2, count])  # no RoI on 16
        np.testing.assert_array_equal(
            fast_roi_align.roi_align_by_level(shared, rois, level_rows, 7, scales).asnumpy(),
            fast_roi_align.roi_align_by_level(maps, rois, level_rows, 7, scales).asnumpy())
        if count == 30:
            first_copies = list(shared._copies)
    assert shared._copies[2] is None  # never pooled from: never copied
    assert all(a is b for a, b in zip(first_copies, shared._copies))
    np.testing.assert_array_equal(shared.channels_last(1),
                                  maps[1].asnumpy().transpose(0, 2, 3, 1))


@pytest.mark.parametrize('use_numba', [
    pytest.param(True, marks=needs_numba), False])
def test_by_level_pools_each_roi_from_its_own_map_in_the_rois_order(use_numba, monkeypatch):
    if not use_numba:
        monkeypatch.setattr(fast_roi_align, 'numba', None)
    rng = np.random.RandomState(4)
    strides = (4, 8, 16)
    maps = [mx.nd.array(rng.randn(2, 5, 64 // s, 80 // s).astype('f')) for s in strides]
    rois = mx.nd.array(random_rois(rng, 40, 2, 16, 20, 4, 60))
    level_rows = np.array_split(rng.permutation(40), [13, 13])  # one level gets no RoI
    out = fast_roi_align.roi_align_by_level(maps, rois, level_rows, 7,
                                            [1.0 / s for s in strides]).asnumpy()
    assert out.shape == (40, 5, 7, 7)
    for feature, rows, stride in zip(maps, level_rows, strides):
        for row in rows:
            expected = mx.nd.contrib.ROIAlign(feature, rois[int(row):int(row) + 1],
                                              pooled_size=(7, 7), spatial_scale=1.0 / stride,
                                              sample_ratio=2).asnumpy()
            np.testing.assert_array_equal(out[row], expected[0])


@pytest.mark.parametrize('use_numba', [
    pytest.param(True, marks=needs_numba), False])
@pytest.mark.parametrize('pooled,bin_step,sample_ratio', [(14, 2, 2), (7, 3, 0), (5, 1, 2)])
def test_bin_step_keeps_every_nth_bin_of_contrib_roialign(use_numba, pooled, bin_step,
                                                          sample_ratio, monkeypatch):
    if not use_numba:
        monkeypatch.setattr(fast_roi_align, 'numba', None)
    rng = np.random.RandomState(pooled + bin_step)
    feature = mx.nd.array(rng.randn(2, 8, 13, 17).astype('f'))
    rois = mx.nd.array(random_rois(rng, 50, 2, 13, 17, 16, 200))
    expected = mx.nd.contrib.ROIAlign(feature, rois, pooled_size=(pooled, pooled),
                                      spatial_scale=1.0 / 16, sample_ratio=sample_ratio,
                                      aligned=False).asnumpy()[:, :, ::bin_step, ::bin_step]
    out = fast_roi_align.roi_align(feature, rois, pooled, 1.0 / 16, sample_ratio, bin_step)
    np.testing.assert_array_equal(out.asnumpy(), expected)


@pytest.mark.parametrize('use_numba', [
    pytest.param(True, marks=needs_numba), False])
@pytest.mark.parametrize('pooled', [14, 7])  # FPN ResNet-50's box head, and an odd side
def test_avg_pool_is_fpn_box_heads_pooling_of_contrib_roialign(use_numba, pooled,
                                                               monkeypatch):
    if not use_numba:
        monkeypatch.setattr(fast_roi_align, 'numba', None)
    rng = np.random.RandomState(pooled)
    feature = mx.nd.array(rng.randn(2, 6, 20, 24).astype('f'))
    rois = mx.nd.array(random_rois(rng, 30, 2, 20, 24, 8, 120))
    out = fast_roi_align.roi_align(feature, rois, pooled, 0.125, avg_pool=True).asnumpy()
    expected = mx.nd.Pooling(
        mx.nd.contrib.ROIAlign(feature, rois, pooled_size=(pooled, pooled),
                               spatial_scale=0.125, sample_ratio=2),
        kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type='avg').asnumpy()
    assert out.shape == expected.shape == (30, 6, (pooled - 1) // 2 + 1, (pooled - 1) // 2 + 1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='avg_pool needs bin_step 1'):
        fast_roi_align.roi_align(feature, rois, pooled, 0.125, bin_step=2, avg_pool=True)
