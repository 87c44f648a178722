"""RoI features: ``contrib.ROIAlign`` on one feature map, or on the FPN level that suits
each box's size.

RoIs are (R, 5) rows ``batch_index, x1, y1, x2, y2`` in input pixels; ``ROIAlign`` skips
RoIs with a negative batch index without reliably zeroing their output. Sampling uses 2x2 points per bin (``sample_ratio=2``) and no
half-pixel shift (``aligned=False``), as the published models were trained.
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
    the other levels see it with batch index -1 (``ROIAlign`` skips it) and get zeros, and
    the per-level results are summed.

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
    """

    def __init__(self, output_size, strides, sample_ratio=2, min_level=2, **kwargs):
        super().__init__(**kwargs)
        self.output_size = (output_size, output_size)
        self.strides = tuple(strides)
        self.sample_ratio = sample_ratio
        self.min_level = min_level

    def _align(self, F, feature, rois, stride):
        return F.contrib.ROIAlign(feature, rois, pooled_size=self.output_size,
                                  spatial_scale=1.0 / stride, sample_ratio=self.sample_ratio,
                                  aligned=False)

    def hybrid_forward(self, F, rois, *features):
        if len(features) != len(self.strides):
            raise ValueError('RoIAlignExtractor has %d strides but got %d feature maps'
                             % (len(self.strides), len(features)))
        if len(features) == 1:
            return self._align(F, features[0], rois, self.strides[0])
        max_level = self.min_level + len(features) - 1
        levels = fpn_levels(F, rois, self.min_level, max_level)
        pooled = []
        for i, (feature, stride) in enumerate(zip(features, self.strides)):
            on_level = levels == self.min_level + i
            level_rois = F.where(on_level, rois, F.ones_like(rois) * -1)
            level_pooled = self._align(F, feature, level_rois, stride)
            # ROIAlign skips RoIs with batch index -1 but does not always write their zeros
            # (a reused buffer keeps old values, even NaN), so zero them explicitly.
            pooled.append(F.where(on_level, level_pooled, F.zeros_like(level_pooled)))
        return F.ElementWiseSum(*pooled)
