"""DeepLabV3+ on WideResNet-38: the network of VPLR (Zhu et al., "Improving Semantic
Segmentation via Video Propagation and Label Relaxation", CVPR 2019), GluonCV's
``deeplab_v3b_plus_wideresnet_citys``.

DeepLabV3+ (Chen et al., ECCV 2018) adds a decoder to DeepLabV3: the ASPP features (output
stride 8) are resized to the stride-2 features of ``mod2``, concatenated with a 48-channel
projection of them and classified there; the logits are then resized to the input.
"""
from mxnet.gluon import nn

from .deeplabv3 import ASPPPooling
from .segbase import SegmentationNetwork, conv_bn_relu, resize_like
from .wideresnet import WideResNet38, stage_features

__all__ = ['DeepLabV3Plus', 'DeepLabV3PlusHead', 'DecoderASPP']


class DecoderASPP(nn.HybridBlock):
    """ASPP as VPLR's decoder has it: a 1x1 branch ``b0``, 3x3 branches ``b1`` ... with
    dilation ``rates`` and image pooling (the last branch), concatenated image pooling first
    and projected to ``channels`` by a bias-free 1x1 convolution alone (no norm, ReLU or
    dropout, unlike :class:`~gluonseg.model_zoo.deeplabv3.ASPP`)."""

    def __init__(self, in_channels, rates=(12, 24, 36), channels=256, norm_layer=nn.BatchNorm,
                 norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        self.num_branches = len(rates) + 2
        with self.name_scope():
            self.b0 = conv_bn_relu(channels, 1, in_channels, **norm)
            for index, rate in enumerate(rates, 1):
                setattr(self, 'b%d' % index, conv_bn_relu(channels, 3, in_channels,
                                                          padding=rate, dilation=rate, **norm))
            setattr(self, 'b%d' % (len(rates) + 1), ASPPPooling(in_channels, channels, **norm))
            self.project = nn.HybridSequential()
            self.project.add(nn.Conv2D(channels, 1, use_bias=False,
                                       in_channels=channels * self.num_branches))

    def hybrid_forward(self, F, x):
        # The projection's weights expect the image pooling first (as VPLR concatenates).
        order = [self.num_branches - 1] + list(range(self.num_branches - 1))
        branches = [getattr(self, 'b%d' % index)(x) for index in order]
        return self.project(F.concat(*branches, dim=1))


class DeepLabV3PlusHead(nn.HybridBlock):
    """:class:`DecoderASPP` on the deep features, resized to the low-level features and
    concatenated after their 48-channel projection (``c1_block``), then two 3x3 conv -> norm ->
    ReLU of 256 channels and a bias-free 1x1 classifier (``block``). Called as
    ``head(deep, low_level)``; the logits have the size of ``low_level``."""

    #: Resize with a reproducible gradient (``segbase.set_reproducible_gradients``).
    reproducible_gradients = False

    def __init__(self, in_channels, low_level_channels, nclass, norm_layer=nn.BatchNorm,
                 norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.aspp = DecoderASPP(in_channels, **norm)
            self.c1_block = nn.HybridSequential()
            self.c1_block.add(nn.Conv2D(48, 1, use_bias=False, in_channels=low_level_channels))
            self.block = conv_bn_relu(256, 3, 256 + 48, padding=1, **norm)
            self.block.add(*conv_bn_relu(256, 3, 256, padding=1, **norm))
            self.block.add(nn.Conv2D(nclass, 1, use_bias=False, in_channels=256))

    def hybrid_forward(self, F, x, low_level):
        context = resize_like(F, self.aspp(x), low_level, self.reproducible_gradients)
        return self.block(F.concat(self.c1_block(low_level), context, dim=1))


class DeepLabV3Plus(SegmentationNetwork):
    """DeepLabV3+ on the dilated WideResNet-38 (VPLR); its stages are kept at the top level
    (``mod1`` ... ``mod7``, ``pool2``, ``pool3``) and the decoder is ``head``, as the published
    weight file names them. There is no auxiliary head.

    Calling it returns the logits (N, nclass, H, W) at the input's H x W (see
    :class:`~gluonseg.model_zoo.segbase.SegmentationNetwork`).

    Parameters
    ----------
    nclass : int
        Number of classes.
    backbone : str
        ``'wideresnet38'`` (the only one).
    aux : bool
        Must be False: the network has no auxiliary head.
    pretrained_base : bool
        Accepted for the common signature and ignored: no ImageNet weights of WideResNet-38
        are published, so the backbone always starts from random weights.
    root : str
        Ignored, as ``pretrained_base``.
    norm_layer, norm_kwargs :
        Normalization block for backbone and head, e.g. ``mx.gluon.contrib.nn.SyncBatchNorm``
        with ``{'num_devices': 4}``.
    """

    def __init__(self, nclass, backbone='wideresnet38', aux=False, pretrained_base=False,
                 root=None, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        if backbone != 'wideresnet38':
            raise ValueError("Unknown backbone %r: DeepLabV3Plus is built on 'wideresnet38'"
                             % (backbone,))
        if aux:
            raise ValueError('DeepLabV3Plus has no auxiliary head: pass aux=False '
                             '(--no-aux on the command line)')
        del pretrained_base, root  # nothing to download: see the docstring
        super().__init__(nclass, aux=False, norm_layer=norm_layer, norm_kwargs=norm_kwargs,
                         **kwargs)
        self.backbone_name = backbone
        with self.name_scope():
            base = WideResNet38(**self._norm)
            for name in base.stage_names:
                setattr(self, name, getattr(base, name))
            self.head = DeepLabV3PlusHead(base.out_channels, base.low_level_channels, nclass,
                                          **self._norm)

    def base_forward(self, x):
        """The ``mod2`` features (1/2 of the input size) and the ``mod7`` features (1/8)."""
        return stage_features(self, x)

    def hybrid_forward(self, F, x):
        low_level, deep = self.base_forward(x)
        return resize_like(F, self.head(deep, low_level), x, self.reproducible_gradients)

    def head_blocks(self):
        """The blocks trained from scratch on a new task (for a larger learning rate)."""
        return [self.head]
