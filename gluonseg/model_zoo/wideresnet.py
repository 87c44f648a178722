"""WideResNet-38 (Wu, Shen and van den Hengel, "Wider or Deeper: Revisiting the ResNet Model
for Visual Recognition", 2019; its variant A2), dilated to output stride 8 as VPLR uses it.

A 3x3 convolution to 64 channels, then six stages of pre-activation residual units (He et al.,
"Identity Mappings in Deep Residual Networks", 2016): each unit starts with norm -> ReLU,
shared by its convolutions and, where the shape changes, the 1x1 projection of the shortcut.
Max pooling halves the size before the first two stages and the first unit of ``mod4``
strides; ``mod5`` to ``mod7`` are dilated instead of strided. The stages are named as in the
published weight file: ``mod1``, ``pool2``, ``mod2``, ``pool3``, ``mod3`` ... ``mod7``.

No ImageNet weights of this backbone are published: it starts from random weights.
"""
from mxnet.gluon import nn

__all__ = ['WideResNet38', 'PreActResidualUnit', 'stage_features']


def _conv(channels, kernel, in_channels, stride=1, dilation=1):
    """A bias-free convolution keeping the size (up to ``stride``)."""
    return nn.Conv2D(channels, kernel, strides=stride, padding=dilation * (kernel // 2),
                     dilation=dilation, use_bias=False, in_channels=in_channels)


def _norm_relu(channels, norm_layer, norm_kwargs):
    """Norm -> ReLU as a 2-element sequence (key ``.0``)."""
    block = nn.HybridSequential()
    block.add(norm_layer(in_channels=channels, **(norm_kwargs or {})), nn.Activation('relu'))
    return block


class PreActResidualUnit(nn.HybridBlock):
    """``x + convs(relu(norm(x)))``, or ``proj_conv(relu(norm(x))) + convs(relu(norm(x)))``
    when the unit changes the channels or the size.

    Parameters
    ----------
    in_channels : int
        Channels of the input.
    channels : tuple of int
        Output channels of the convolutions: two (3x3, 3x3) or three (1x1, 3x3, 1x1; channel
        dropout of rate ``dropout`` before the last).
    stride, dilation : int
        Of the first convolution (and the projection) and of the 3x3 convolutions.
    dropout : float
        Rate of the channel dropout of a three-convolution unit.
    norm_layer, norm_kwargs :
        Normalization block.
    """

    def __init__(self, in_channels, channels, stride=1, dilation=1, dropout=0.0,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        if len(channels) not in (2, 3):
            raise ValueError('a unit has 2 or 3 convolutions, got channels %r' % (channels,))
        with self.name_scope():
            self.bn1 = _norm_relu(in_channels, norm_layer, norm_kwargs)
            self.convs = nn.HybridSequential()
            if len(channels) == 2:
                self.convs.add(_conv(channels[0], 3, in_channels, stride, dilation),
                               _norm_relu(channels[0], norm_layer, norm_kwargs),
                               _conv(channels[1], 3, channels[0], dilation=dilation))
            else:
                self.convs.add(_conv(channels[0], 1, in_channels, stride),
                               _norm_relu(channels[0], norm_layer, norm_kwargs),
                               _conv(channels[1], 3, channels[0], dilation=dilation),
                               _norm_relu(channels[1], norm_layer, norm_kwargs),
                               nn.Dropout(dropout, axes=(2, 3)),  # drops whole channels
                               _conv(channels[2], 1, channels[1]))
            self.proj_conv = None
            if stride != 1 or in_channels != channels[-1]:
                self.proj_conv = _conv(channels[-1], 1, in_channels, stride)

    def hybrid_forward(self, F, x):
        activated = self.bn1(x)
        shortcut = x if self.proj_conv is None else self.proj_conv(activated)
        return self.convs(activated) + shortcut


class WideResNet38(nn.HybridBlock):
    """The dilated WideResNet-38 feature extractor (output stride 8, no classifier).

    Called on (N, 3, H, W), it returns the features of ``mod2`` (N, 128, H/2, W/2) and of
    ``mod7`` (N, 4096, H/8, W/8) (sizes rounded up).

    Parameters
    ----------
    norm_layer, norm_kwargs :
        Normalization block, e.g. ``mx.gluon.contrib.nn.SyncBatchNorm``.

    Attributes
    ----------
    low_level_channels, out_channels : int
        Channels of the ``mod2`` features and of the output.
    """

    #: mod2 ... mod7: (units, channels of the unit's convolutions, stride of the first unit,
    #: dilation, dropout rate before the last convolution). Two channels: two 3x3
    #: convolutions; three: a 1x1 -> 3x3 -> 1x1 bottleneck.
    stages = ((3, (128, 128), 1, 1, 0.0),
              (3, (256, 256), 1, 1, 0.0),
              (6, (512, 512), 2, 1, 0.0),
              (3, (512, 1024), 1, 2, 0.0),
              (1, (512, 1024, 2048), 1, 4, 0.3),
              (1, (1024, 2048, 4096), 1, 4, 0.5))
    #: The children, in the order the input passes through them.
    stage_names = ('mod1', 'pool2', 'mod2', 'pool3', 'mod3', 'mod4', 'mod5', 'mod6', 'mod7')

    def __init__(self, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        self.low_level_channels = self.stages[0][1][-1]
        self.out_channels = self.stages[-1][1][-1]
        with self.name_scope():
            self.mod1 = nn.HybridSequential()
            self.mod1.add(_conv(64, 3, 3))
            self.pool2 = nn.MaxPool2D(3, 2, 1)
            self.pool3 = nn.MaxPool2D(3, 2, 1)
            in_channels = 64
            for index, spec in enumerate(self.stages, 2):
                units, channels, stride, dilation, dropout = spec
                stage = nn.HybridSequential()
                for unit in range(units):
                    stage.add(PreActResidualUnit(in_channels, channels,
                                                 stride if unit == 0 else 1, dilation, dropout,
                                                 norm_layer, norm_kwargs))
                    in_channels = channels[-1]
                setattr(self, 'mod%d' % index, stage)

    def hybrid_forward(self, F, x):
        return stage_features(self, x)


def stage_features(stages, x):
    """``(mod2 features, mod7 features)`` of ``x`` through the stages that ``stages`` holds as
    attributes (a :class:`WideResNet38`, or a network keeping them at its top level)."""
    low = stages.mod2(stages.pool2(stages.mod1(x)))
    high = stages.pool3(low)
    for name in ('mod3', 'mod4', 'mod5', 'mod6', 'mod7'):
        high = getattr(stages, name)(high)
    return low, high
