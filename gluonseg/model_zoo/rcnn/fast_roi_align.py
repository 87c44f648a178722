"""``contrib.ROIAlign``'s values, computed faster on the CPU for inference (needs numba).

MXNet 1.9.1's CPU ``ROIAlign`` reads the four neighbours of every sampling point one channel
at a time: on 1000 proposals (C4 ResNet-50: 1024 channels, 14x14 bins of 2x2 points) it is a
large share of the lean Mask R-CNN's time. Here the feature map
is laid out channels-last first, so each neighbour is one contiguous row of channels and the
weighted sums run along it; RoIs are split between threads (the kernel releases the GIL).
The sampling points, clamping and weights are ``ROIAlign``'s (``aligned=False``), computed
in float32 in the same order, so the values equal MXNet's (bit-identical in the tests). No
gradient: :meth:`~.roi_align.RoIAlignExtractor.pool` uses it at inference; training keeps
``ROIAlign``.

:func:`roi_align` falls back to ``contrib.ROIAlign`` when numba is not installed
(``pip install gluonseg[fast]``) or the arrays are not on the CPU.
"""

import mxnet as mx
import numpy as np

from ...utils.mxnet_compat import host_view
from ...utils.numba_support import compile_kernel, numba, run_in_threads

__all__ = ['available', 'ChannelsLastMaps', 'roi_align', 'roi_align_by_level']


def available():
    """Whether the numba kernel can be used (numba is importable)."""
    return numba is not None


def _pool_rois(feature, rois, scale, pooled, sample_ratio, step, avg_pool, out, rows):
    """Pool the RoIs ``rows`` of ``rois`` (R, 5) from ``feature`` (B, H, W, C) into the same
    rows of ``out`` (R, C, S, S), as ``ROIAlign`` does with ``pooled`` bins a side
    (negative batch index: zeros), keeping every ``step``-th bin (S = ceil(pooled / step));
    with ``avg_pool``, then averaged over 3x3 windows, stride 2, padding 1 counted
    (S = (pooled - 1) // 2 + 1)."""
    height, width, channels = feature.shape[1], feature.shape[2], feature.shape[3]
    one, half, zero = np.float32(1), np.float32(0.5), np.float32(0)
    side = (pooled + step - 1) // step
    bins = side * side
    for r in rows:
        image = int(rois[r, 0])
        if image < 0:
            out[r] = 0
            continue
        start_w = rois[r, 1] * scale
        start_h = rois[r, 2] * scale
        roi_w = max(rois[r, 3] * scale - start_w, one)  # malformed RoIs count as 1x1
        roi_h = max(rois[r, 4] * scale - start_h, one)
        bin_h = roi_h / np.float32(pooled)
        bin_w = roi_w / np.float32(pooled)
        grid_h = sample_ratio if sample_ratio > 0 else int(np.ceil(roi_h / pooled))
        grid_w = sample_ratio if sample_ratio > 0 else int(np.ceil(roi_w / pooled))
        count = np.float32(max(grid_h * grid_w, 1))
        block = np.zeros((bins, channels), np.float32)  # channels-last, written out below
        for ph in range(side):
            for pw in range(side):
                acc = block[ph * side + pw]
                for iy in range(grid_h):
                    y = (start_h + np.float32(ph * step) * bin_h +
                         (np.float32(iy) + half) * bin_h / np.float32(grid_h))
                    for ix in range(grid_w):
                        x = (start_w + np.float32(pw * step) * bin_w +
                             (np.float32(ix) + half) * bin_w / np.float32(grid_w))
                        if y < -one or y > height or x < -one or x > width:
                            continue  # outside the map: contributes zero
                        yy, xx = max(y, zero), max(x, zero)
                        y_low, x_low = int(yy), int(xx)
                        if y_low >= height - 1:
                            y_low = y_high = height - 1
                            yy = np.float32(y_low)
                        else:
                            y_high = y_low + 1
                        if x_low >= width - 1:
                            x_low = x_high = width - 1
                            xx = np.float32(x_low)
                        else:
                            x_high = x_low + 1
                        ly, lx = yy - np.float32(y_low), xx - np.float32(x_low)
                        hy, hx = one - ly, one - lx
                        w1, w2, w3, w4 = hy * hx, hy * lx, ly * hx, ly * lx
                        top_left = feature[image, y_low, x_low]
                        top_right = feature[image, y_low, x_high]
                        bottom_left = feature[image, y_high, x_low]
                        bottom_right = feature[image, y_high, x_high]
                        for c in range(channels):
                            acc[c] += (w1 * top_left[c] + w2 * top_right[c] +
                                       w3 * bottom_left[c] + w4 * bottom_right[c])
        if not avg_pool:
            target = out[r].reshape((channels, bins))
            for c in range(channels):
                for k in range(bins):
                    target[c, k] = block[k, c] / count
            continue
        # ROIAlign's values first, then their 3x3 sums, all along the channels
        block /= count
        window = (side - 1) // 2 + 1
        sums = np.zeros((window * window, channels), np.float32)
        for i in range(window):
            for j in range(window):
                total = sums[i * window + j]
                for y in range(max(2 * i - 1, 0), min(2 * i + 2, side)):
                    for x in range(max(2 * j - 1, 0), min(2 * j + 2, side)):
                        cell = block[y * side + x]
                        for c in range(channels):
                            total[c] += cell[c]
        target = out[r].reshape((channels, window * window))
        nine = np.float32(9)
        for c in range(channels):
            for k in range(window * window):
                target[c, k] = sums[k, c] / nine


_pool_rois = compile_kernel(_pool_rois)


def roi_align(feature, rois, output_size, spatial_scale, sample_ratio=2, bin_step=1,
              avg_pool=False):
    """``mx.nd.contrib.ROIAlign(feature, rois, (output_size, output_size), spatial_scale,
    sample_ratio, aligned=False)[:, :, ::bin_step, ::bin_step]``, by the numba kernel when it
    can run (which pools only the bins kept).

    Parameters
    ----------
    feature : NDArray (B, C, H, W)
    rois : NDArray (R, 5)
        ``batch_index, x1, y1, x2, y2`` in input pixels.
    output_size : int
    spatial_scale : float
        Feature cells per input pixel (1 / stride).
    sample_ratio : int
        Sampling points per bin side (<= 0: adaptive, as ``ROIAlign``).
    bin_step : int
        Keep the bins ``0, bin_step, 2 * bin_step, ...`` of each side (what a 1x1 conv of
        stride ``bin_step`` reads of the pooled features).
    avg_pool : bool
        Then ``Pooling(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type='avg')``, what
        FPN's box head does first (in the kernel: the pooled RoI is never written whole);
        not with ``bin_step``.

    Returns
    -------
    NDArray (R, C, S, S) on ``feature``'s context, S = ceil(output_size / bin_step), or
    ``(output_size - 1) // 2 + 1`` with ``avg_pool``.
    """
    return roi_align_by_level([feature], rois, [np.arange(rois.shape[0])], output_size,
                              [spatial_scale], sample_ratio, bin_step, avg_pool)


class ChannelsLastMaps(object):
    """Feature maps (B, C, H, W) and the channels-last copies the kernel reads, each made
    on first use and then kept: the box head and the mask head pool from the same maps
    (a copy of FPN's P2 is not free).

    Parameters
    ----------
    features : list of NDArray (B, C, H, W)
    """

    def __init__(self, features):
        self.features = list(features)
        self._copies = [None] * len(self.features)

    def channels_last(self, level):
        """A NumPy view (B, H, W, C) of map ``level``'s channels-last copy."""
        if self._copies[level] is None:
            # MXNet's transpose is multi-threaded, NumPy's is not.
            copy = mx.nd.transpose(self.features[level], (0, 2, 3, 1))
            copy.wait_to_read()
            self._copies[level] = (copy, host_view(copy))  # the view lives with the copy
        return self._copies[level][1]


def roi_align_by_level(features, rois, level_rows, output_size, spatial_scales,
                       sample_ratio=2, bin_step=1, avg_pool=False):
    """Each RoI pooled from one of several feature maps (FPN levels) only: the RoIs
    ``level_rows[i]`` (index arrays) from ``features[i]`` at ``spatial_scales[i]``, the
    output rows in the order of ``rois``; every RoI must be in one ``level_rows`` entry.
    ``features``: a list of NDArrays, or :class:`ChannelsLastMaps` to reuse their copies.
    Otherwise as :func:`roi_align`."""
    if avg_pool and bin_step != 1:
        raise ValueError('roi_align: avg_pool needs bin_step 1, not %d' % bin_step)
    maps = features if isinstance(features, ChannelsLastMaps) else ChannelsLastMaps(features)
    features = maps.features
    count = rois.shape[0]
    if numba is None or features[0].context.device_type != 'cpu' or not count:
        pooled = _contrib_by_level(features, rois, level_rows, output_size, spatial_scales,
                                   sample_ratio)
        if avg_pool:
            return mx.nd.Pooling(pooled, kernel=(3, 3), stride=(2, 2), pad=(1, 1),
                                 pool_type='avg')
        return pooled if bin_step == 1 else pooled[:, :, ::bin_step, ::bin_step]
    boxes = np.ascontiguousarray(rois.asnumpy(), dtype=np.float32)
    side = (output_size - 1) // 2 + 1 if avg_pool else -(-output_size // bin_step)
    # The kernel writes into an NDArray from MXNet's pool, which reuses memory earlier arrays
    # freed; a fresh NumPy array (C4: 800 MB) would be faulted in page by page on every call.
    pooled = mx.nd.empty((count, features[0].shape[1], side, side),
                         ctx=features[0].context)
    out = host_view(pooled)
    for level, (rows, scale) in enumerate(zip(level_rows, spatial_scales)):
        if not len(rows):
            continue
        feature = maps.channels_last(level)
        run_in_threads(lambda part: _pool_rois(feature, boxes, np.float32(scale), output_size,
                                               sample_ratio, bin_step, avg_pool, out, part),
                       np.asarray(rows, dtype=np.int64))
    return pooled


def _contrib_by_level(features, rois, level_rows, output_size, spatial_scales, sample_ratio):
    """:func:`roi_align_by_level` with ``contrib.ROIAlign`` (one call per level)."""
    def align(feature, level_rois, scale):
        return mx.nd.contrib.ROIAlign(feature, level_rois, pooled_size=(output_size,) * 2,
                                      spatial_scale=scale, sample_ratio=sample_ratio,
                                      aligned=False)
    if len(features) == 1:
        return align(features[0], rois, spatial_scales[0])
    ctx = rois.context
    order, parts = [], []
    for feature, rows, scale in zip(features, level_rows, spatial_scales):
        if len(rows):
            order.append(np.asarray(rows))
            parts.append(align(feature, rois.take(mx.nd.array(rows, ctx=ctx)), scale))
    pooled = mx.nd.concat(*parts, dim=0) if len(parts) > 1 else parts[0]
    return pooled.take(mx.nd.array(np.argsort(np.concatenate(order)), ctx=ctx))
