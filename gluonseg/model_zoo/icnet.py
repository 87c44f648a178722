"""ICNet: an image cascade of three input resolutions (Zhao et al., ECCV 2018).

Three branches see the image at three resolutions and meet in cascade feature fusion units:

- full resolution: three stride-2 3x3 convolutions (``conv_sub1``), features at 1/8;
- half resolution: the input resized to 1/2, the dilated ResNet's stem and stages 1-2,
  features at 1/16 (``conv_sub2`` reduces them);
- quarter resolution: those stage-2 features resized to half their size (1/32), then
  stages 3-4 and pyramid pooling (``psp_head``, PSPNet's head without its classifier;
  ``conv_sub4`` reduces it).

The fusion unit ``head.cff_24`` brings the 1/32 branch to the 1/16 one, ``head.cff_12``
that result to the 1/8 one; ``head.conv_cls`` classifies the fused 1/8 features resized to
1/4, and that is resized to the input for the main output. Each fusion unit also
classifies its resized low-resolution input: the cascade label guidance of the paper.

Every resize follows the tensors at run time (corner-aligned bilinear, as GluonCV trained
the published weights): by a factor (1/2, 2) where GluonCV resizes to a fraction of the
size it was built for, to another tensor's size otherwise. On the sizes GluonCV was built
for this computes what GluonCV computes; any other size works too.
"""
import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from .pspnet import PyramidPooling
from .segbase import SegBaseModel, conv_bn_relu, resize_like

__all__ = ['ICNet', 'CascadeFeatureFusion', 'ICHead', 'resize_by']

# The smallest input side: the quarter-resolution branch halves the ceil((H // 2) / 8) rows
# of the stage-2 features, which must leave at least one.
MIN_INPUT_SIZE = 18


def resize_by(F, x, scale, reproducible_gradient=False):
    """Corner-aligned bilinear resize of ``x`` by ``scale``: each side ``floor(scale * s)``.

    With ``reproducible_gradient`` (see :func:`~gluonseg.model_zoo.segbase.resize_like`) the
    gradient flows through :func:`resize_like` to a size made the same way.
    """
    resized = F.contrib.BilinearResize2D(x, scale_height=scale, scale_width=scale,
                                         align_corners=True)
    if not reproducible_gradient:
        return resized
    # A one-channel map of the target size, only for its shape.
    like = F.contrib.BilinearResize2D(F.BlockGrad(F.slice_axis(x, axis=1, begin=0, end=1)),
                                      scale_height=scale, scale_width=scale, align_corners=True)
    return resize_like(F, x, like, reproducible_gradient=True)


def check_input(x):
    """Raise ValueError unless ``x`` is an (N, C, H, W) batch ICNet can take."""
    if x.ndim != 4 or min(x.shape[2:]) < MIN_INPUT_SIZE:
        raise ValueError('ICNet takes (N, C, H, W) inputs of at least %dx%d (its coarsest '
                         'branch works at about 1/32 of the input), got shape %s'
                         % (MIN_INPUT_SIZE, MIN_INPUT_SIZE, x.shape))


class ConvBNReLU(nn.HybridBlock):
    """Conv (no bias) -> norm -> ReLU with named parts (keys ``conv`` and ``bn``, as ICNet's
    published files name them; :func:`conv_bn_relu` numbers them)."""

    def __init__(self, channels, kernel, in_channels, stride=1, padding=0,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv = nn.Conv2D(channels, kernel, strides=stride, padding=padding,
                                  use_bias=False, in_channels=in_channels)
            self.bn = norm_layer(in_channels=channels, **(norm_kwargs or {}))

    def hybrid_forward(self, F, x):
        return F.relu(self.bn(self.conv(x)))


class PyramidContext(nn.HybridBlock):
    """PSPNet's head without its classifier: pyramid pooling, then a 3x3 conv to 512
    channels, norm, ReLU and dropout 0.1 (keys ``psp.*``, ``block.0``, ``block.1``)."""

    def __init__(self, in_channels, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.psp = PyramidPooling(in_channels, norm_layer=norm_layer,
                                      norm_kwargs=norm_kwargs)
            self.block = conv_bn_relu(512, 3, 2 * in_channels, norm_layer, norm_kwargs,
                                      padding=1)
            self.block.add(nn.Dropout(0.1))

    def hybrid_forward(self, F, x):
        return self.block(self.psp(x))


class CascadeFeatureFusion(nn.HybridBlock):
    """Fuse low-resolution features into high-resolution ones.

    ``cff(low, high)`` resizes ``low`` to the size of ``high``, applies a dilated 3x3 conv
    and norm to it (``conv_low``) and a 1x1 conv and norm to ``high`` (``conv_hign``, sic,
    as the published files spell it), and returns ``(relu(sum), logits)``: the fused
    features and the classification of the resized ``low`` (``conv_low_cls``), for the
    cascade label guidance.
    """

    #: Resize with a reproducible gradient (``segbase.set_reproducible_gradients``).
    reproducible_gradients = False

    def __init__(self, low_channels, high_channels, channels, nclass, norm_layer=nn.BatchNorm,
                 norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv_low = nn.HybridSequential()
            self.conv_low.add(nn.Conv2D(channels, 3, padding=2, dilation=2, use_bias=False,
                                        in_channels=low_channels),
                              norm_layer(in_channels=channels, **(norm_kwargs or {})))
            self.conv_hign = nn.HybridSequential()
            self.conv_hign.add(nn.Conv2D(channels, 1, use_bias=False, in_channels=high_channels),
                               norm_layer(in_channels=channels, **(norm_kwargs or {})))
            self.conv_low_cls = nn.Conv2D(nclass, 1, use_bias=False, in_channels=channels)

    def hybrid_forward(self, F, low, high):
        low = self.conv_low(resize_like(F, low, high, self.reproducible_gradients))
        fused = F.relu(low + self.conv_hign(high))
        return fused, self.conv_low_cls(low)


class ICHead(nn.HybridBlock):
    """The cascade: ``head(x_sub1, x_sub2, x_sub4)`` with the branches' features at 1/8,
    1/16 and 1/32 returns the logits at 1/4, 1/8 and 1/16 of the input."""

    #: Resize with a reproducible gradient (``segbase.set_reproducible_gradients``).
    reproducible_gradients = False

    def __init__(self, nclass, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.cff_12 = CascadeFeatureFusion(128, 64, 128, nclass, **norm)
            self.cff_24 = CascadeFeatureFusion(256, 256, 128, nclass, **norm)
            self.conv_cls = nn.Conv2D(nclass, 1, use_bias=False, in_channels=128)

    def hybrid_forward(self, F, x_sub1, x_sub2, x_sub4):
        fused_16, logits_16 = self.cff_24(x_sub4, x_sub2)
        fused_8, logits_8 = self.cff_12(fused_16, x_sub1)
        logits_4 = self.conv_cls(resize_by(F, fused_8, 2, self.reproducible_gradients))
        return logits_4, logits_8, logits_16


class ICNet(SegBaseModel):
    """ICNet on a dilated ResNet (module docstring: the three branches and their fusion).

    Calling the network returns the main logits (N, nclass, H, W) at the input's size; while
    training (``autograd.is_training()``) it returns four outputs, each resized to the
    input's size so that they compare with the label: the main logits, then the cascade's
    1/4, 1/8 and 1/16 logits (weighted in the loss by :attr:`training_output_weights`).
    A hybridized network keeps one graph per mode (:class:`SegBaseModel`).
    :meth:`cascade_outputs` gives the four at their own resolutions, in any mode.

    Parameters
    ----------
    nclass : int
        Number of classes.
    backbone : str
        ``'resnet50'`` (the published weights), ``'resnet18'``, ... (see :class:`SegBaseModel`).
    pretrained_base : bool
        Load the ImageNet weights of the backbone.
    aux : bool
        Must be False: ICNet has no auxiliary FCN head (its cascade guides the training).
    """

    # The paper's cascade label guidance weights: lambda3 = 1 (the 1/4 output), lambda2 =
    # 0.4 (1/8), lambda1 = 0.16 (1/16). The 1/4 output is trained through the main output,
    # which is that output resized to the label (the same values as the resized 1/4 one,
    # so that one gets 0 rather than counting the branch twice).
    training_output_weights = (1.0, 0.0, 0.4, 0.16)

    def __init__(self, nclass, backbone='resnet50', aux=False, pretrained_base=True, root=None,
                 **kwargs):
        if aux:
            raise ValueError('ICNet has no auxiliary head: build it with aux=False (gluonseg '
                             'train: --no-aux); while training it returns its cascade outputs '
                             'instead (training_output_weights)')
        super().__init__(nclass, backbone=backbone, aux=False, pretrained_base=pretrained_base,
                         root=root, **kwargs)
        # Stage 2 of the backbone: 512 channels for ResNet-50 and deeper, 128 for ResNet-18.
        stage2_channels = self.stage4_channels // 4
        with self.name_scope():
            self.conv_sub1 = nn.HybridSequential()
            for in_channels, channels in ((3, 32), (32, 32), (32, 64)):
                self.conv_sub1.add(ConvBNReLU(channels, 3, in_channels, stride=2, padding=1,
                                              **self._norm))
            self.psp_head = PyramidContext(self.stage4_channels, **self._norm)
            self.head = ICHead(nclass, **self._norm)
            self.conv_sub4 = ConvBNReLU(256, 1, 512, **self._norm)
            self.conv_sub2 = ConvBNReLU(256, 1, stage2_channels, **self._norm)

    @property
    def training_only_outputs(self):
        """True: the cascade's outputs are computed only while training."""
        return True

    def cascade_logits(self, F, x):
        """The logits at 1/4, 1/8 and 1/16 of the input ``x``."""
        x_sub1 = self.conv_sub1(x)
        # The half-resolution input needs no gradient: no reproducible resize.
        x_sub2 = resize_by(F, x, 0.5)
        x_sub2 = self.layer2(self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x_sub2))))))
        x_sub4 = resize_by(F, x_sub2, 0.5, self.reproducible_gradients)
        x_sub4 = self.psp_head(self.layer4(self.layer3(x_sub4)))
        return self.head(x_sub1, self.conv_sub2(x_sub2), self.conv_sub4(x_sub4))

    def hybrid_forward(self, F, x):
        cascade = self.cascade_logits(F, x)
        out = resize_like(F, cascade[0], x, self.reproducible_gradients)
        # A hybridized network takes this branch once, when its graph is traced; forward()
        # keeps a graph per mode.
        if autograd.is_training():
            return (out,) + tuple(resize_like(F, logits, x, self.reproducible_gradients)
                                  for logits in cascade)
        return out

    def forward(self, x, *args):
        if isinstance(x, mx.nd.NDArray):
            check_input(x)
        return super().forward(x, *args)

    def cascade_outputs(self, x):
        """All four outputs at their own resolutions, computed imperatively (also on a
        hybridized network), in the current mode: outside ``autograd.record()``, inference.

        Parameters
        ----------
        x : NDArray
            (N, 3, H, W) normalized images.

        Returns
        -------
        tuple of NDArray
            The main logits at H x W, then the cascade's logits at 1/4, 1/8 and 1/16 of the
            input (GluonCV's four outputs, in its order).
        """
        check_input(x)
        cascade = self.cascade_logits(mx.nd, x)
        return (resize_like(mx.nd, cascade[0], x),) + tuple(cascade)

    def head_blocks(self):
        """The blocks trained from scratch on a new task (for a larger learning rate)."""
        return [self.conv_sub1, self.psp_head, self.head, self.conv_sub4, self.conv_sub2]
