"""DeepLabV3: atrous spatial pyramid pooling with image pooling (Chen et al., 2017)."""
from mxnet.gluon import nn

from .segbase import SegBaseModel, classifier_block, conv_bn_relu

__all__ = ['DeepLabV3', 'ASPP', 'DeepLabHead']


class ASPPPooling(nn.HybridBlock):
    """Image-level features: global average pool, 1x1 conv, norm, ReLU, spread over the map."""

    def __init__(self, in_channels, channels, norm_layer=nn.BatchNorm, norm_kwargs=None,
                 **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.gap = nn.HybridSequential()
            self.gap.add(nn.GlobalAvgPool2D())
            self.gap.add(*conv_bn_relu(channels, 1, in_channels, norm_layer, norm_kwargs))

    def hybrid_forward(self, F, x):
        # Resizing a 1x1 map is a broadcast; broadcast_like keeps any input size valid.
        return F.broadcast_like(self.gap(x), x, lhs_axes=(2, 3), rhs_axes=(2, 3))


class ASPP(nn.HybridBlock):
    """A 1x1 branch, three 3x3 branches with dilation ``rates`` and image pooling, concatenated
    and projected to ``channels`` (with dropout 0.5)."""

    def __init__(self, in_channels, rates=(12, 24, 36), channels=256, norm_layer=nn.BatchNorm,
                 norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            # 'concurent' (sic) is how the published weight files spell it.
            self.concurent = nn.HybridSequential()
            self.concurent.add(conv_bn_relu(channels, 1, in_channels, **norm))
            for rate in rates:
                self.concurent.add(conv_bn_relu(channels, 3, in_channels, padding=rate,
                                                dilation=rate, **norm))
            self.concurent.add(ASPPPooling(in_channels, channels, **norm))
            self.project = conv_bn_relu(channels, 1, channels * (len(rates) + 2), **norm)
            self.project.add(nn.Dropout(0.5))

    def hybrid_forward(self, F, x):
        return self.project(F.concat(*[branch(x) for branch in self.concurent], dim=1))


class DeepLabHead(nn.HybridBlock):
    """ASPP, then a 3x3 conv of 256 channels and the classifier."""

    def __init__(self, in_channels, nclass, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.aspp = ASPP(in_channels, norm_layer=norm_layer, norm_kwargs=norm_kwargs)
            self.block = classifier_block(256, 256, nclass, norm_layer, norm_kwargs)

    def hybrid_forward(self, F, x):
        return self.block(self.aspp(x))


class DeepLabV3(SegBaseModel):
    """DeepLabV3 on a dilated ResNet (output stride 8).

    See :class:`SegBaseModel` for the arguments and the outputs.
    """

    def __init__(self, nclass, backbone='resnet50', **kwargs):
        super().__init__(nclass, backbone=backbone, **kwargs)
        with self.name_scope():
            self.head = DeepLabHead(self.stage4_channels, nclass, **self._norm)
