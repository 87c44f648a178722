"""RoI features: ``contrib.ROIAlign`` on one feature map, or on the FPN level that suits
each box's size.

RoIs are (R, 5) rows ``batch_index, x1, y1, x2, y2`` in input pixels; ``ROIAlign`` skips
RoIs with a negative batch index (:class:`RoIAlignExtractor` says how it mishandles them).
Sampling uses 2x2 points per bin (``sample_ratio=2``) and no half-pixel shift
(``aligned=False``), as the published models were trained.

:class:`RoIAlignExtractor` is the one entry of the R-CNN for RoI pooling; it chooses the
kernel: in a graph (symbols), while recording gradients or with GluonCV's quirk,
``contrib.ROIAlign`` on every level; otherwise (inference on NDArrays) each RoI on its own
level only, by :mod:`~.fast_roi_align` (its numba kernel on the CPU, else ``ROIAlign`` per
level), the same values.
"""
import numpy as np
from mxnet import autograd
from mxnet import ndarray as nd
from mxnet import symbol as sym
from mxnet.gluon import nn

from . import fast_roi_align

__all__ = ['fpn_levels', 'RoIAlignExtractor']


def fpn_levels(F, rois, min_level=2, max_level=5, canonical_size=224.0, canonical_level=4,
               eps=1e-6):
    """Pyramid level (R,) of each RoI, as floats.

    A box of ``canonical_size`` pixels (sqrt of its area) goes to ``canonical_level``; each
    doubling of the size goes one level up: ``floor(4 + log2(sqrt(w * h) / 224))``, clipped
    to ``[min_level, max_level]``. Widths and heights count both end pixels (``+1``).
    """
    _, x1, y1, x2, y2 = F.split(rois, axis=-1, num_outputs=5)
    width = x2 - x1 + 1
    height = y2 - y1 + 1
    level = F.floor(canonical_level + F.log2(F.sqrt(width * height) / canonical_size + eps))
    return F.clip(level, min_level, max_level).reshape((-1,))


class RoIAlignExtractor(nn.HybridBlock):
    """Pooled features (R, C, size, size) of RoIs on one or several feature maps.

    With one map, every RoI is pooled from it. With several (FPN levels ``min_level``,
    ``min_level + 1``, ...), each RoI is pooled from the level :func:`fpn_levels` assigns:
    on every other level it is given batch index -1, so ``ROIAlign`` skips it, its block is
    set to zero, and the per-level results are summed.

    ``contrib.ROIAlign`` (MXNet 1.9.1, CPU) has a bug with skipped RoIs: for a skipped RoI
    n it writes a zero to the n-th *element* of the output instead of its block, so the
    first RoI's features get zeros at positions 1..R-1 (R <= C * size^2 keeps them inside the
    first block), and the skipped block keeps whatever the buffer held. GluonCV's FPN models
    (and their published numbers) pool this way; the first detection's mask is the one
    affected. gluonseg zeroes the skipped blocks and re-pools the first RoI on its own
    (four 1-RoI calls), unless ``gluoncv_quirk`` is set to reproduce GluonCV exactly. With
    more than C * size^2 RoIs (while recording gradients) it pools every RoI on every level
    instead, which is correct but slower.

    Called with NDArrays outside ``autograd.record()`` (inference), it runs :meth:`pool`,
    which pools each RoI on its own level only (no gradient).

    Parameters
    ----------
    output_size : int
        Side of the pooled grid (7 or 14).
    strides : sequence of int
        Input pixels per cell of each feature map it is called with.
    sample_ratio : int
        Sampling points per bin side.
    min_level : int
        Pyramid level of the first feature map (2 for P2).
    gluoncv_quirk : bool
        Keep GluonCV's corrupted first RoI (see above).
    """

    def __init__(self, output_size, strides, sample_ratio=2, min_level=2, gluoncv_quirk=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.output_size = (output_size, output_size)
        self.strides = tuple(strides)
        self.sample_ratio = sample_ratio
        self.min_level = min_level
        self.gluoncv_quirk = gluoncv_quirk

    def forward(self, rois, *features):
        """``extractor(rois, *features)``: :meth:`pool` for inference on NDArrays, the
        graph (:meth:`hybrid_forward`) otherwise."""
        if self._pools_by_level(rois):
            return self.pool(rois, features)
        return super().forward(rois, *features)

    def _pools_by_level(self, rois):
        """Whether :meth:`pool` computes these RoIs' features with :mod:`~.fast_roi_align`:
        inference on NDArrays, not GluonCV's quirk (which only the graph reproduces)."""
        return (isinstance(rois, nd.NDArray) and not autograd.is_recording()
                and not self.gluoncv_quirk)

    def pool(self, rois, features, avg_pool=False):
        """Pooled features (R, C, size, size) of ``rois`` (R, 5) on ``features`` (a
        list of NDArrays, or a :class:`~.fast_roi_align.ChannelsLastMaps` whose copies
        several calls share), each RoI on its own level; the values of ``extractor(rois,
        *features)``; RoIs and maps of a graph (symbols) go through the graph.

        With ``avg_pool``, followed by the 3x3/2 average pool (padding 1) an FPN box head
        starts with (S = (size - 1) // 2 + 1), which the kernel does without writing the
        whole pooled grid.
        """
        maps = features if isinstance(features, fast_roi_align.ChannelsLastMaps) else \
            fast_roi_align.ChannelsLastMaps(features)
        if not self._pools_by_level(rois):
            pooled = super().forward(rois, *maps.features)
            if not avg_pool:
                return pooled
            F = nd if isinstance(pooled, nd.NDArray) else sym
            return F.Pooling(pooled, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type='avg')
        count = len(maps.features)
        if count != len(self.strides):
            raise ValueError('RoIAlignExtractor has %d strides but got %d feature maps'
                             % (len(self.strides), count))
        if count == 1:
            level_rows = [np.arange(rois.shape[0])]
        else:
            levels = fpn_levels(nd, rois, self.min_level,
                                self.min_level + count - 1).asnumpy()
            level_rows = [np.flatnonzero(levels == self.min_level + i) for i in range(count)]
        return fast_roi_align.roi_align_by_level(
            maps, rois, level_rows, self.output_size[0],
            [1.0 / stride for stride in self.strides], self.sample_ratio, avg_pool=avg_pool)

    def _align(self, F, feature, rois, stride):
        return F.contrib.ROIAlign(feature, rois, pooled_size=self.output_size,
                                  spatial_scale=1.0 / stride, sample_ratio=self.sample_ratio,
                                  aligned=False)

    def _pool_by_level(self, F, rois, levels, features, skip=True):
        pooled = []
        for i, (feature, stride) in enumerate(zip(features, self.strides)):
            on_level = levels == self.min_level + i
            level_rois = F.where(on_level, rois, F.ones_like(rois) * -1) if skip else rois
            level_pooled = self._align(F, feature, level_rois, stride)
            # Skipped RoIs' blocks are not written by ROIAlign: zero them here.
            pooled.append(F.where(on_level, level_pooled, F.zeros_like(level_pooled)))
        return F.ElementWiseSum(*pooled)

    def hybrid_forward(self, F, rois, *features):
        if len(features) != len(self.strides):
            raise ValueError('RoIAlignExtractor has %d strides but got %d feature maps'
                             % (len(self.strides), len(features)))
        if len(features) == 1:
            return self._align(F, features[0], rois, self.strides[0])
        max_level = self.min_level + len(features) - 1
        levels = fpn_levels(F, rois, self.min_level, max_level)
        if not self.gluoncv_quirk and not hasattr(rois, 'list_outputs'):
            # imperative, recording gradients
            block = features[0].shape[1] * self.output_size[0] * self.output_size[1]
            if rois.shape[0] > block:  # the bug would reach beyond the first RoI
                return self._pool_by_level(F, rois, levels, features, skip=False)
        pooled = self._pool_by_level(F, rois, levels, features)
        if self.gluoncv_quirk:
            return pooled
        first = F.slice_axis(rois, axis=0, begin=0, end=1)
        first_pooled = self._pool_by_level(F, first, F.slice_axis(levels, axis=0, begin=0,
                                                                  end=1), features)
        # Replace row 0 with a `where` rather than a slice from row 1, which would be
        # empty (an error) with a single RoI.
        is_first = F.contrib.arange_like(rois, axis=0) == 0
        return F.where(is_first, F.broadcast_like(first_pooled, pooled), pooled)
