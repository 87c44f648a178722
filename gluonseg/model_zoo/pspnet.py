"""PSPNet: pyramid pooling over bins 1, 2, 3 and 6 (Zhao et al., CVPR 2017)."""
from mxnet.gluon import nn

from .segbase import SegBaseModel, classifier_block, conv_bn_relu, register_semantic_models, \
    resize_like

__all__ = ['PSPNet', 'PyramidPooling', 'PSPHead']


class PyramidPooling(nn.HybridBlock):
    """Average-pool stage-4 features to each bin size, reduce to ``in/4`` channels, resize back
    and concatenate with the input (2 x ``in`` channels out).

    The pooled maps are resized to the input's own size, so any input size works (GluonCV fixes
    it to crop/8 at construction).
    """

    #: Resize with a reproducible gradient (``segbase.set_reproducible_gradients``).
    reproducible_gradients = False

    def __init__(self, in_channels, bins=(1, 2, 3, 6), norm_layer=nn.BatchNorm, norm_kwargs=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.bins = tuple(bins)
        channels = in_channels // len(self.bins)
        with self.name_scope():
            for i in range(len(self.bins)):
                # Named conv1..conv4 as in the published files.
                setattr(self, 'conv%d' % (i + 1),
                        conv_bn_relu(channels, 1, in_channels, norm_layer, norm_kwargs))

    def hybrid_forward(self, F, x):
        features = [x]
        for i, size in enumerate(self.bins):
            pooled = F.contrib.AdaptiveAvgPooling2D(x, output_size=size)
            features.append(resize_like(F, getattr(self, 'conv%d' % (i + 1))(pooled), x,
                                        self.reproducible_gradients))
        return F.concat(*features, dim=1)


class PSPHead(nn.HybridBlock):
    """Pyramid pooling then a 3x3 conv to 512 channels and the classifier."""

    def __init__(self, in_channels, nclass, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.psp = PyramidPooling(in_channels, norm_layer=norm_layer, norm_kwargs=norm_kwargs)
            self.block = classifier_block(2 * in_channels, 512, nclass, norm_layer, norm_kwargs)

    def hybrid_forward(self, F, x):
        return self.block(self.psp(x))


class PSPNet(SegBaseModel):
    """Pyramid scene parsing network on a dilated ResNet.

    See :class:`SegBaseModel` for the arguments and the outputs.
    """

    def __init__(self, nclass, backbone='resnet50', **kwargs):
        super().__init__(nclass, backbone=backbone, **kwargs)
        with self.name_scope():
            self.head = PSPHead(self.stage4_channels, nclass, **self._norm)


# GluonCV's published PSPNet weights (the bins 1,2,3,6 files of Feb 2019 and later).
PUBLISHED = {
    'psp_resnet101_voc': ('2c2f4e1c2b11461b52598a4b2038bccbcfc166eb', {'mIoU': 85.1}),
    'psp_resnet101_coco': ('09f89cad0e107cb2bffdb1b07706ba31798096f2',
                           {'pixAcc': 92.4, 'mIoU': 70.4}),
    'psp_resnet50_ade': ('3f220f537400dfa607c3d041ed3b172db39b0b01',
                         {'pixAcc': 80.1, 'mIoU': 41.5}),
    'psp_resnet101_ade': ('240a4758b506447faf7c55cd7a7837d66f5039a6',
                          {'pixAcc': 80.8, 'mIoU': 43.3}),
    'psp_resnet101_citys': ('d0e8603120ab02118a8973d52a26b8296d1b4078',
                            {'pixAcc': 96.4, 'mIoU': 79.9}),
}

register_semantic_models('psp', PSPNet, 'PSPNet', PUBLISHED)
