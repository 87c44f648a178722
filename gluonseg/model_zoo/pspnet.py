"""PSPNet: pyramid pooling over bins 1, 2, 3 and 6 (Zhao et al., CVPR 2017)."""
from mxnet.gluon import nn

from .segbase import SegBaseModel, classifier_block, conv_bn_relu, resize_like

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
