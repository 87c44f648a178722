"""Mask training targets: the binary ground-truth mask of each positive RoI's box, seen
through the RoI.

Each positive RoI's target is ``ROIAlign`` of its matched object's full-image binary mask
over the RoI, to M x M cells, with the sampling the RoI features use (2 x 2 points per cell,
no half-pixel shift). The targets are soft at the object's border (fractions between 0 and
1) and the loss is a binary cross-entropy against them, as the published models were
trained. A mask filling the RoI gives all ones.
"""
import mxnet as mx

__all__ = ['MaskTargetGenerator']


class MaskTargetGenerator(object):
    """M x M mask targets of RoIs from full-size binary masks (no gradient).

    Parameters
    ----------
    mask_size : int
        M, the side of the predicted masks (14 or 28 in the published models).
    sample_ratio : int
        ``ROIAlign`` sampling points per cell side.
    """

    def __init__(self, mask_size, sample_ratio=2):
        self.mask_size = int(mask_size)
        self.sample_ratio = int(sample_ratio)

    def __repr__(self):
        return 'MaskTargetGenerator(mask_size=%d, sample_ratio=%d)' % (self.mask_size,
                                                                       self.sample_ratio)

    def __call__(self, masks, rois, mask_index):
        """Targets (P, M, M) float32.

        Parameters
        ----------
        masks : NDArray (K, H, W)
            Binary (0/1, any dtype) full-size object masks in the network input's pixels.
        rois : NDArray (P, 4)
            ``x1, y1, x2, y2`` of the RoIs.
        mask_index : NDArray or array_like (P,)
            The mask (0..K-1) of each RoI's object.
        """
        if masks.ndim != 3:
            raise ValueError('MaskTargetGenerator expects (K, H, W) masks, got shape %s'
                             % (masks.shape,))
        ctx = masks.context
        index = mx.nd.array(mask_index, ctx=ctx).reshape((-1, 1))
        rois = mx.nd.array(rois, ctx=ctx) if not isinstance(rois, mx.nd.NDArray) else rois
        if rois.shape[0] == 0:
            return mx.nd.zeros((0, self.mask_size, self.mask_size), ctx=ctx)
        indexed = mx.nd.concat(index, rois.astype('float32'), dim=1)
        targets = mx.nd.contrib.ROIAlign(masks.astype('float32').expand_dims(1), indexed,
                                         pooled_size=(self.mask_size, self.mask_size),
                                         spatial_scale=1.0, sample_ratio=self.sample_ratio,
                                         aligned=False)
        return targets.reshape((-1, self.mask_size, self.mask_size))
