"""DeepLabV3: atrous spatial pyramid pooling with image pooling (Chen et al., 2017)."""
from mxnet.gluon import nn

from .segbase import SegBaseModel, classifier_block, conv_bn_relu, register_semantic_models

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


# GluonCV's published DeepLabV3 weights. deeplab_resnet152_voc is the 86.7% of the GluonCV 0.3
# release; deeplab_resnet152_coco was published without a number.
PUBLISHED = {
    'deeplab_resnet101_voc': ('311ed22c63f3ac28b5f1e1663c458f26600e62da', {'mIoU': 86.2}),
    'deeplab_resnet152_voc': ('d35bea8817935d1ab310ef1e6dd06bb18c2d5f0d', {'mIoU': 86.7}),
    'deeplab_resnet101_coco': ('ed817f76086abb4c3404af62ec1b5487c67642b7',
                               {'pixAcc': 92.5, 'mIoU': 70.4}),
    'deeplab_resnet152_coco': ('83247aaeeded6988790cd93ac93151514094846f', {}),
    'deeplab_resnet50_ade': ('c7789b237adc7253405bee57c84d53b15db45942',
                             {'pixAcc': 80.5, 'mIoU': 42.5}),
    'deeplab_resnet101_ade': ('bf1584dfcec12063eff3075ee643e181c0f6d443',
                              {'pixAcc': 81.1, 'mIoU': 44.1}),
    'deeplab_resnet50_citys': ('cf6a7bb3d55360933de647a8505f7936003902a4',
                               {'pixAcc': 96.3, 'mIoU': 78.7}),
    'deeplab_resnet101_citys': ('eb8477a91efc244c85b364c0736664078aaf0e65',
                                {'pixAcc': 96.4, 'mIoU': 79.4}),
}

register_semantic_models('deeplab', DeepLabV3, 'DeepLabV3', PUBLISHED)
