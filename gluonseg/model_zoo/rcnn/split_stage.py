"""C4's stage 4 with its first block's 1x1 convolutions moved before RoIAlign.

In a C4 Mask R-CNN every proposal goes through stage 4 (ResNet-50: 0.8 GMAC per RoI, 1000
proposals). The first block's ``conv1`` (1x1, stride 1) + ``bn1`` and its shortcut (a 1x1
conv of stride 2, or a 2x2 average pool and a 1x1 conv (v1d), + BN) are affine maps, and
RoIAlign is a weighted average of positions whose weights sum to 1 whenever every sampling
point lies on the map (up to one cell beyond its edge, where RoIAlign clamps). So for such
RoIs they commute: run the convolutions once on the whole stage-3 map, then pool their
outputs (the shortcut's as its stride or average pool would have: see :class:`StageEntry`).
The values are the same up to float rounding, and a quarter of stage 4's multiply-adds on
the RoIs are gone. Only the ReLU after ``bn1`` has to wait until after pooling, which is
where :class:`StageTail` applies it. Off the map, RoIAlign's weights sum to less than 1 and
the BN's offset would be scaled down with them: the RPN clips the proposals to the image
(which the map covers), but the detections' boxes are not clipped, so the mask head keeps
the whole stage 4.

Used by :func:`gluonseg.model_zoo.optimize.optimize_mask_rcnn` for C4 models whose stage 4
starts with a bottleneck of that shape (ResNet-50/101); C4 ResNet-18's stage starts with a
3x3 conv and keeps the plain path.
"""
import mxnet as mx
from mxnet.gluon import nn

from ...utils.mxnet_compat import layer_kwargs
from . import fast_roi_align

__all__ = ['StageEntry', 'StageTail', 'pool_entry_maps', 'shortcut_pooling',
           'split_stage', 'splitting_block']


def split_stage(top_features, extractor):
    """(:class:`StageEntry`, :class:`StageTail`) for C4's ``top_features`` (a sequence whose
    first element is stage 4) pooled by ``extractor`` (its
    :class:`~.roi_align.RoIAlignExtractor`), or None when the stage does not split
    (:func:`splitting_block`)."""
    first = splitting_block(top_features, extractor)
    if first is None:
        return None
    return StageEntry(first, extractor), StageTail(top_features[0])


def splitting_block(top_features, extractor):
    """Stage 4's first block if the stage splits, else None: the block must be a
    bottleneck with a 1x1 stride-1 ``conv1`` and a shortcut of a 1x1 conv (strided, v1b; or
    after an average pool, v1d: then with a fixed sample ratio and the pool dividing the
    RoI size), then a norm layer."""
    if top_features is None or len(top_features) != 1 or extractor.gluoncv_quirk:
        return None
    first = top_features[0][0]
    conv1, shortcut = getattr(first, 'conv1', None), getattr(first, 'downsample', None)
    if (conv1 is None or not hasattr(first, 'conv3') or
            not isinstance(shortcut, nn.HybridSequential) or len(shortcut) not in (2, 3)):
        return None
    *pool, conv, _ = list(shortcut)
    if (not isinstance(conv, nn.Conv2D) or layer_kwargs(conv1)['kernel'] != (1, 1) or
            layer_kwargs(conv1)['stride'] != (1, 1) or layer_kwargs(conv)['kernel'] != (1, 1) or
            layer_kwargs(conv)['pad'] != (0, 0)):
        return None
    if pool:
        kwargs = getattr(pool[0], '_kwargs', {})
        side = kwargs.get('kernel', (0, 0))[0]
        if (kwargs.get('pool_type') != 'avg' or kwargs['stride'] != kwargs['kernel'] or
                kwargs['kernel'][0] != kwargs['kernel'][1] or kwargs['pad'] != (0, 0) or
                extractor.sample_ratio <= 0 or extractor.output_size[0] % side):
            return None
    return first


def shortcut_pooling(first_block, extractor):
    """Keyword arguments of :func:`~.fast_roi_align.roi_align` that pool the stride-1
    shortcut map as the shortcut of ``first_block`` (:func:`splitting_block`) reads the
    RoI pooled by ``extractor``: a stride-s conv reads every s-th bin (``bin_step``); an
    s x s average pool before it (v1d) averages s x s bins, which is RoIAlign with s times
    fewer bins a side of s times the sampling points each (the same points)."""
    *pool, conv, _ = list(first_block.downsample)
    size, ratio = extractor.output_size[0], extractor.sample_ratio
    if pool:
        side = layer_kwargs(pool[0])['kernel'][0]
        return dict(output_size=size // side, sample_ratio=ratio * side)
    return dict(output_size=size, sample_ratio=ratio, bin_step=layer_kwargs(conv)['stride'][0])


def pool_entry_maps(maps, rois, extractor, shortcut_pooling):
    """What a :class:`StageTail` receives for ``rois`` (R, 5): a :class:`StageEntry`'s two
    ``maps`` pooled as ``extractor`` (C4's :class:`~.roi_align.RoIAlignExtractor`) pools,
    the shortcut's as ``shortcut_pooling`` (the entry's) says."""
    conv1_map, shortcut_map = maps
    size, scale = extractor.output_size[0], 1.0 / extractor.strides[0]
    return [fast_roi_align.roi_align(conv1_map, rois, size, scale, extractor.sample_ratio),
            fast_roi_align.roi_align(shortcut_map, rois, spatial_scale=scale,
                                     **shortcut_pooling)]


class StageEntry(mx.gluon.HybridBlock):
    """The first block's ``bn1(conv1(x))`` (before its ReLU) and its shortcut at stride 1,
    on the whole feature map: ``(conv1 map, shortcut map)``.

    The blocks are the stage's own (the same parameters). The shortcut's conv runs with
    stride 1 here; what it did to the pooled RoI, ``shortcut_pooling`` (see
    :func:`shortcut_pooling`) does when pooling its map.
    """

    def __init__(self, first_block, extractor):
        super().__init__(prefix=first_block.prefix + 'entry_')
        conv, norm = list(first_block.downsample)[-2:]
        self.shortcut_pooling = shortcut_pooling(first_block, extractor)
        with self.name_scope():
            self.conv1, self.bn1 = first_block.conv1, first_block.bn1
            # The shortcut's conv at stride 1, sharing its parameters (same prefix).
            self.shortcut_conv = nn.Conv2D(
                conv._channels, 1, use_bias=conv.bias is not None,
                in_channels=conv._in_channels, prefix=conv.prefix, params=conv.params)
            self.shortcut_norm = norm

    def hybrid_forward(self, F, x):
        return self.bn1(self.conv1(x)), self.shortcut_norm(self.shortcut_conv(x))


class StageTail(mx.gluon.HybridBlock):
    """The rest of stage 4 on pooled RoIs: from the pooled ``conv1`` map (R, P, S, S) and
    the pooled shortcut (R, 4P, S/2, S/2) to what the stage gives for the RoIs."""

    def __init__(self, stage):
        super().__init__(prefix=stage.prefix + 'tail_')
        self._first = stage[0]
        self._rest = list(stage)[1:]
        self.register_child(self._first, 'first')
        for i, block in enumerate(self._rest):
            self.register_child(block, 'rest%d' % i)

    def hybrid_forward(self, F, conv1_pooled, shortcut_pooled):
        first = self._first
        out = first.relu(conv1_pooled)
        out = first.relu(first.bn2(first.conv2(out)))
        out = first.bn3(first.conv3(out))
        out = F.Activation(out + shortcut_pooled, act_type='relu')
        for block in self._rest:
            out = block(out)
        return out
