"""Fast-SCNN: real-time segmentation without an ImageNet backbone (Poudel et al., BMVC 2019).

Four parts, trained together from scratch and named as in GluonCV's published file:

``learning_to_downsample``
    a 3x3 convolution with stride 2 (no padding) and two depthwise-separable convolutions
    with stride 2: 64 channels at about 1/8 of the input size (the "higher resolution"
    features);
``global_feature_extractor``
    three stages of three inverted-residual bottlenecks (expansion 6, strides 2, 2, 1: 64,
    96, 128 channels, about 1/32) and PSPNet's pyramid pooling (bins 1, 2, 3, 6) fused by a
    1x1 convolution;
``feature_fusion``
    the 1/32 features resized to the 1/8 ones, a depthwise convolution, and the sum of
    both branches after a 1x1 convolution and BatchNorm each, then ReLU;
``classifier``
    two depthwise-separable convolutions, dropout 0.1 and a 1x1 convolution.

While training, the auxiliary head (``auxlayer``: 3x3 convolution, dropout, 1x1 classifier)
reads the 1/8 features. GluonCV builds its network for one input size (``height`` and
``width`` fixed at construction); here every resize follows the tensors at run time
(``BilinearResize2D`` in ``like`` mode, corners aligned as GluonCV's), so any input size
works, hybridized or not, and on the size GluonCV was built for the logits are GluonCV's.

The parts take ``norm``, the network's ``{'norm_layer': ..., 'norm_kwargs': ...}``.
"""
from mxnet import autograd
from mxnet.gluon import nn

from .pspnet import PyramidPooling
from .segbase import SegmentationNetwork, classifier_block, conv_bn_relu, resize_like

__all__ = ['FastSCNN', 'LearningToDownsample', 'GlobalFeatureExtractor', 'FeatureFusion',
           'Classifier', 'LinearBottleneck']


class Layers(nn.HybridBlock):
    """A sequence of layers under one key: the published file names the layers of these
    parts ``<part>.<key>.<i>`` (``key`` is ``'block'`` or ``'conv'``)."""

    def __init__(self, key, layers, **kwargs):
        super().__init__(**kwargs)
        self._key = key
        setattr(self, key, layers)

    def hybrid_forward(self, F, x):
        return getattr(self, self._key)(x)


def depthwise_conv(channels, strides, norm):
    """3x3 depthwise convolution -> norm -> ReLU (keys ``conv.0``, ``conv.1``)."""
    return Layers('conv', conv_bn_relu(channels, 3, channels, padding=1, strides=strides,
                                       groups=channels, **norm))


def separable_conv(in_channels, channels, strides, norm):
    """Depthwise 3x3 -> norm -> ReLU -> pointwise 1x1 -> norm -> ReLU (keys ``conv.0``,
    ``conv.1``, ``conv.3``, ``conv.4``)."""
    layers = conv_bn_relu(in_channels, 3, in_channels, padding=1, strides=strides,
                          groups=in_channels, **norm)
    layers.add(*conv_bn_relu(channels, 1, in_channels, **norm))
    return Layers('conv', layers)


class LinearBottleneck(nn.HybridBlock):
    """MobileNetV2's inverted residual: 1x1 expansion (x ``expansion``) -> 3x3 depthwise
    (``strides``) -> 1x1 linear projection, plus the input when the shapes allow."""

    def __init__(self, in_channels, channels, expansion, strides, norm, **kwargs):
        super().__init__(**kwargs)
        self.residual = strides == 1 and in_channels == channels
        hidden = in_channels * expansion
        with self.name_scope():
            self.block = nn.HybridSequential()
            self.block.add(Layers('block', conv_bn_relu(hidden, 1, in_channels, **norm)),
                           depthwise_conv(hidden, strides, norm),
                           nn.Conv2D(channels, 1, use_bias=False, in_channels=hidden),
                           norm['norm_layer'](in_channels=channels, **(norm['norm_kwargs'] or {})))

    def hybrid_forward(self, F, x):
        out = self.block(x)
        return out + x if self.residual else out


class LearningToDownsample(nn.HybridBlock):
    """Three strided convolutions to 64 channels at about 1/8 of the input size (the first
    has no padding, as GluonCV's: 64 x 128 inputs give 8 x 16 features, 97 x 131 give
    12 x 17)."""

    def __init__(self, norm, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = Layers('block', conv_bn_relu(32, 3, 3, strides=2, **norm))
            self.dsconv1 = separable_conv(32, 48, 2, norm)
            self.dsconv2 = separable_conv(48, 64, 2, norm)

    def hybrid_forward(self, F, x):
        return self.dsconv2(self.dsconv1(self.conv(x)))


class FusedPyramidPooling(PyramidPooling):
    """PSPNet's pyramid pooling followed by a 1x1 convolution back to ``channels``."""

    def __init__(self, in_channels, channels, norm, **kwargs):
        super().__init__(in_channels, **norm, **kwargs)
        with self.name_scope():
            self.out = Layers('block', conv_bn_relu(channels, 1, 2 * in_channels, **norm))

    def hybrid_forward(self, F, x):
        return self.out(super().hybrid_forward(F, x))


class GlobalFeatureExtractor(nn.HybridBlock):
    """Stages of ``blocks`` bottlenecks (by default 64, 96, 128 channels with strides 2, 2,
    1) and the fused pyramid pooling."""

    def __init__(self, norm, in_channels=64, stage_channels=(64, 96, 128), strides=(2, 2, 1),
                 blocks=3, expansion=6, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            for i, (channels, stride) in enumerate(zip(stage_channels, strides)):
                stage = nn.HybridSequential()
                for j in range(blocks):
                    stage.add(LinearBottleneck(in_channels, channels, expansion,
                                               stride if j == 0 else 1, norm))
                    in_channels = channels
                setattr(self, 'bottleneck%d' % (i + 1), stage)
            self.ppm = FusedPyramidPooling(in_channels, in_channels, norm)

    def hybrid_forward(self, F, x):
        return self.ppm(self.bottleneck3(self.bottleneck2(self.bottleneck1(x))))


class FeatureFusion(nn.HybridBlock):
    """Adds the global features, resized to the size of the higher-resolution ones, to
    those; both through a 1x1 convolution and a norm, then ReLU."""

    #: Resize with a reproducible gradient (``segbase.set_reproducible_gradients``).
    reproducible_gradients = False

    def __init__(self, higher_channels, lower_channels, channels, norm, **kwargs):
        super().__init__(**kwargs)
        norm_layer, norm_kwargs = norm['norm_layer'], norm['norm_kwargs'] or {}
        with self.name_scope():
            self.dwconv = depthwise_conv(lower_channels, 1, norm)
            self.conv_lower_res = nn.Conv2D(channels, 1, in_channels=lower_channels)
            self.bn = norm_layer(in_channels=channels, **norm_kwargs)
            self.conv_higher_res = nn.Conv2D(channels, 1, in_channels=higher_channels)
            self.bn_high = norm_layer(in_channels=channels, **norm_kwargs)

    def hybrid_forward(self, F, higher, lower):
        lower = resize_like(F, lower, higher, self.reproducible_gradients)
        lower = self.bn(self.conv_lower_res(self.dwconv(lower)))
        # Activation rather than F.relu: oneDNN's kernel (MXNet's relu op is many times
        # slower on a CPU, and breaks the conv+norm+ReLU fusion of optimize()).
        return F.Activation(lower + self.bn_high(self.conv_higher_res(higher)),
                            act_type='relu')


class Classifier(nn.HybridBlock):
    """Two depthwise-separable convolutions, dropout and the 1x1 classifier."""

    def __init__(self, channels, nclass, norm, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.dsconv1 = separable_conv(channels, channels, 1, norm)
            self.dsconv2 = separable_conv(channels, channels, 1, norm)
            self.dropout = nn.Dropout(dropout)
            self.conv = nn.Conv2D(nclass, 1, in_channels=channels)

    def hybrid_forward(self, F, x):
        return self.conv(self.dropout(self.dsconv2(self.dsconv1(x))))


class FastSCNN(SegmentationNetwork):
    """Fast-SCNN (see the module docstring); outputs as :class:`SegmentationNetwork` says.

    Parameters
    ----------
    nclass : int
        Number of classes.
    aux : bool
        Build the auxiliary head on the 1/8 features (the published weights include it).
    pretrained_base : bool
        Accepted for the registry's common signature and ignored: Fast-SCNN has no ImageNet
        backbone, the whole network trains from scratch.
    root : str
        Ignored likewise (no backbone weights to fetch).
    norm_layer, norm_kwargs :
        Normalization block, e.g. ``mx.gluon.contrib.nn.SyncBatchNorm`` with
        ``{'num_devices': 4}``.
    """

    def __init__(self, nclass, aux=True, pretrained_base=False, root=None,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(nclass, aux=aux, norm_layer=norm_layer, norm_kwargs=norm_kwargs,
                         **kwargs)
        with self.name_scope():
            self.learning_to_downsample = LearningToDownsample(self._norm)
            self.global_feature_extractor = GlobalFeatureExtractor(self._norm)
            self.feature_fusion = FeatureFusion(64, 128, 128, self._norm)
            self.classifier = Classifier(128, nclass, self._norm)
            if aux:
                self.auxlayer = Layers('block', classifier_block(64, 64, nclass, **self._norm))

    def hybrid_forward(self, F, x):
        higher = self.learning_to_downsample(x)
        fused = self.feature_fusion(higher, self.global_feature_extractor(higher))
        out = resize_like(F, self.classifier(fused), x, self.reproducible_gradients)
        # Traced once per mode in a hybridized network (SegmentationNetwork.forward).
        if self.aux and autograd.is_training():
            return out, resize_like(F, self.auxlayer(higher), x, self.reproducible_gradients)
        return out

    def head_blocks(self):
        """No block: nothing in Fast-SCNN comes pretrained, so the whole network trains at
        one learning rate (the trainer's head multiplier changes nothing)."""
        return []
