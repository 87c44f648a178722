"""RoI features: ``contrib.ROIAlign`` on one feature map, or on the FPN level that suits
each box's size.

RoIs are (R, 5) rows ``batch_index, x1, y1, x2, y2`` in input pixels; ``ROIAlign`` skips
RoIs with a negative batch index (:class:`RoIAlignExtractor` says how it mishandles them).
Sampling uses 2x2 points per bin (``sample_ratio=2``) and no half-pixel shift
(``aligned=False``), as the published models were trained.
"""
from mxnet.gluon import nn

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
    more than C * size^2 RoIs (called imperatively) it pools every RoI on every level
    instead, which is correct but slower.

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
