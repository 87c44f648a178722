"""C4's stage 4 with its first block's 1x1 convolutions moved before RoIAlign.

In a C4 Mask R-CNN every RoI goes through stage 4 (ResNet-50: 0.8 GMAC per RoI, 1000
proposals). The first block's ``conv1`` (1x1, stride 1) + ``bn1`` and its shortcut (1x1
conv of stride 2 + BN) are affine maps applied at each position, and RoIAlign is a weighted
average of positions whose weights sum to 1 whenever every sampling point lies on the map
(proposals and detections are clipped to the image, which the map covers). So the two
commute: run the convolutions once on the whole stage-3 map, then pool their outputs (the
shortcut's: only the bins the stride-2 conv reads, ``bin_step=2``). The values are the same
up to float rounding, and a quarter of stage 4's multiply-adds on the RoIs are gone. Only
the ReLU after ``bn1`` has to wait until after pooling, which is where :class:`StageTail`
applies it.

Used by :func:`~.lean.optimize_mask_rcnn` for C4 models whose stage 4 starts with a
bottleneck of that shape (ResNet-50/101 v1b); other stages keep the plain path.
"""
import mxnet as mx
from mxnet.gluon import nn

from . import fast_roi_align

__all__ = ['StageEntry', 'StageTail', 'pool_entry_maps', 'split_stage']


def split_stage(top_features):
    """(:class:`StageEntry`, :class:`StageTail`) for C4's ``top_features`` (a sequence whose
    first element is stage 4), or None when its first block is not a bottleneck with a
    1x1 stride-1 ``conv1`` and a (1x1 conv, norm) shortcut."""
    if top_features is None or len(top_features) != 1:
        return None
    stage = top_features[0]
    first = stage[0]
    conv1, shortcut = getattr(first, 'conv1', None), getattr(first, 'downsample', None)
    if (conv1 is None or not hasattr(first, 'conv3') or shortcut is None or
            len(shortcut) != 2 or not isinstance(shortcut[0], nn.Conv2D)):
        return None
    if (conv1._kwargs['kernel'] != (1, 1) or conv1._kwargs['stride'] != (1, 1) or
            shortcut[0]._kwargs['kernel'] != (1, 1) or shortcut[0]._kwargs['pad'] != (0, 0)):
        return None
    return StageEntry(first), StageTail(stage)


def pool_entry_maps(maps, rois, extractor, bin_step):
    """What a :class:`StageTail` receives for ``rois`` (R, 5): a :class:`StageEntry`'s two
    ``maps`` pooled as ``extractor`` (C4's :class:`~.roi_align.RoIAlignExtractor`) pools,
    the shortcut's on every ``bin_step``-th bin."""
    conv1_map, shortcut_map = maps
    size, scale = extractor.output_size[0], 1.0 / extractor.strides[0]
    return [fast_roi_align.roi_align(conv1_map, rois, size, scale, extractor.sample_ratio),
            fast_roi_align.roi_align(shortcut_map, rois, size, scale, extractor.sample_ratio,
                                     bin_step)]


class StageEntry(mx.gluon.HybridBlock):
    """The first block's ``bn1(conv1(x))`` (before its ReLU) and its shortcut at stride 1,
    on the whole feature map: ``(conv1 map, shortcut map)``.

    The blocks are the stage's own (the same parameters); the shortcut's conv runs with
    stride 1 here, its stride becomes the pooling's ``bin_step``.
    """

    def __init__(self, first_block):
        super().__init__(prefix=first_block.prefix + 'entry_')
        conv, norm = first_block.downsample
        self.bin_step = conv._kwargs['stride'][0]
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
