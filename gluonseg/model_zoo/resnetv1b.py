"""ResNetV1b backbones (stride in the 3x3 conv) with the v1b/v1c/v1d/v1s stems and dilation.

The parameter names written by ``save_parameters()`` are the ones of GluonCV's published
ImageNet files (``conv1.0.weight``, ``layer3.0.downsample.1.weight``, ...), so those files load.

=======  ==========================================  =====================
variant  stem                                        downsample shortcut
=======  ==========================================  =====================
v1b      7x7/2 conv 64                               1x1 strided conv + BN
v1c      3x3 convs 32, 32, 64                        1x1 strided conv + BN
v1d      3x3 convs 32, 32, 64                        avg-pool, 1x1 conv + BN
v1s      3x3 convs 64, 64, 128 (segmentation)        1x1 strided conv + BN
=======  ==========================================  =====================
"""
from mxnet.gluon import nn

__all__ = ['ResNetV1b', 'BasicBlockV1b', 'BottleneckV1b', 'resnet_v1b', 'RESNET_SPECS',
           'RESNET_VARIANTS']

# depth -> (block type, blocks per stage)
RESNET_SPECS = {
    18: ('basic', [2, 2, 2, 2]),
    34: ('basic', [3, 4, 6, 3]),
    50: ('bottleneck', [3, 4, 6, 3]),
    101: ('bottleneck', [3, 4, 23, 3]),
    152: ('bottleneck', [3, 8, 36, 3]),
}

# variant -> stem and shortcut options of ResNetV1b
RESNET_VARIANTS = {
    'v1b': dict(deep_stem=False, stem_width=64, avg_down=False),
    'v1c': dict(deep_stem=True, stem_width=32, avg_down=False),
    'v1d': dict(deep_stem=True, stem_width=32, avg_down=True),
    'v1s': dict(deep_stem=True, stem_width=64, avg_down=False),
}


def _norm(norm_layer, norm_kwargs, channels):
    return norm_layer(in_channels=channels, **(norm_kwargs or {}))


class BasicBlockV1b(nn.HybridBlock):
    """Two 3x3 convolutions (ResNet-18/34)."""
    expansion = 1

    def __init__(self, inplanes, planes, strides=1, dilation=1, previous_dilation=1,
                 downsample=None, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.conv1 = nn.Conv2D(planes, 3, strides, padding=dilation, dilation=dilation,
                                   use_bias=False, in_channels=inplanes)
            self.bn1 = _norm(norm_layer, norm_kwargs, planes)
            self.relu = nn.Activation('relu')
            self.conv2 = nn.Conv2D(planes, 3, 1, padding=previous_dilation,
                                   dilation=previous_dilation, use_bias=False, in_channels=planes)
            self.bn2 = _norm(norm_layer, norm_kwargs, planes)
            self.downsample = downsample

    def hybrid_forward(self, F, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.Activation(out + residual, act_type='relu')


class BottleneckV1b(nn.HybridBlock):
    """1x1 -> 3x3 (strided, dilated) -> 1x1 bottleneck (ResNet-50/101/152)."""
    expansion = 4

    def __init__(self, inplanes, planes, strides=1, dilation=1, previous_dilation=1,
                 downsample=None, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        del previous_dilation  # only the basic block's second conv uses it
        with self.name_scope():
            self.conv1 = nn.Conv2D(planes, 1, use_bias=False, in_channels=inplanes)
            self.bn1 = _norm(norm_layer, norm_kwargs, planes)
            self.relu = nn.Activation('relu')
            self.conv2 = nn.Conv2D(planes, 3, strides, padding=dilation, dilation=dilation,
                                   use_bias=False, in_channels=planes)
            self.bn2 = _norm(norm_layer, norm_kwargs, planes)
            self.conv3 = nn.Conv2D(planes * 4, 1, use_bias=False, in_channels=planes)
            self.bn3 = _norm(norm_layer, norm_kwargs, planes * 4)
            self.downsample = downsample

    def hybrid_forward(self, F, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.Activation(out + residual, act_type='relu')


class ResNetV1b(nn.HybridBlock):
    """ResNet with the stride on the 3x3 convolution ("ResNet v1.5").

    Parameters
    ----------
    block : BasicBlockV1b or BottleneckV1b
    layers : list of int
        Blocks in each of the four stages.
    classes : int
        Outputs of the ImageNet classifier ``fc``.
    dilated : bool
        Output stride 8 instead of 32: stage 3 and 4 keep their resolution and use dilation
        2 and 4; the first block of each of these stages uses half that dilation.
    deep_stem, stem_width, avg_down :
        Stem and shortcut options; see ``RESNET_VARIANTS``.
    norm_layer, norm_kwargs :
        Normalization block (``nn.BatchNorm``, ``mx.gluon.contrib.nn.SyncBatchNorm``) and its
        keyword arguments.
    """

    def __init__(self, block, layers, classes=1000, dilated=False, deep_stem=False,
                 stem_width=32, avg_down=False, norm_layer=nn.BatchNorm, norm_kwargs=None,
                 **kwargs):
        super().__init__(**kwargs)
        self._norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        self.inplanes = stem_width * 2 if deep_stem else 64
        with self.name_scope():
            if deep_stem:
                self.conv1 = nn.HybridSequential(prefix='conv1_')
                self.conv1.add(nn.Conv2D(stem_width, 3, 2, 1, use_bias=False, in_channels=3),
                               _norm(norm_layer, norm_kwargs, stem_width),
                               nn.Activation('relu'),
                               nn.Conv2D(stem_width, 3, 1, 1, use_bias=False,
                                         in_channels=stem_width),
                               _norm(norm_layer, norm_kwargs, stem_width),
                               nn.Activation('relu'),
                               nn.Conv2D(stem_width * 2, 3, 1, 1, use_bias=False,
                                         in_channels=stem_width))
            else:
                self.conv1 = nn.Conv2D(64, 7, 2, 3, use_bias=False, in_channels=3)
            self.bn1 = _norm(norm_layer, norm_kwargs, self.inplanes)
            self.relu = nn.Activation('relu')
            self.maxpool = nn.MaxPool2D(pool_size=3, strides=2, padding=1)
            stage_dilation = [1, 1, 2, 4] if dilated else [1, 1, 1, 1]
            stage_stride = [1, 2, 1, 1] if dilated else [1, 2, 2, 2]
            for i, (planes, n) in enumerate(zip([64, 128, 256, 512], layers)):
                stage = self._make_layer(i + 1, block, planes, n, stage_stride[i],
                                         stage_dilation[i], avg_down)
                setattr(self, 'layer%d' % (i + 1), stage)
            self.avgpool = nn.GlobalAvgPool2D()
            self.flat = nn.Flatten()
            self.fc = nn.Dense(classes, in_units=512 * block.expansion)

    def _make_layer(self, stage_index, block, planes, blocks, strides, dilation, avg_down):
        downsample = None
        out_channels = planes * block.expansion
        if strides != 1 or self.inplanes != out_channels:
            downsample = nn.HybridSequential(prefix='down%d_' % stage_index)
            with downsample.name_scope():
                if avg_down:
                    # Average-pool then a stride-1 conv sees every input pixel (v1d).
                    pool = strides if dilation == 1 else 1
                    downsample.add(nn.AvgPool2D(pool_size=pool, strides=pool, ceil_mode=True,
                                                count_include_pad=False))
                    downsample.add(nn.Conv2D(out_channels, 1, 1, use_bias=False,
                                             in_channels=self.inplanes))
                else:
                    downsample.add(nn.Conv2D(out_channels, 1, strides, use_bias=False,
                                             in_channels=self.inplanes))
                downsample.add(_norm(self._norm['norm_layer'], self._norm['norm_kwargs'],
                                     out_channels))
        # The first block of a dilated stage uses half the stage's dilation, so that
        # its receptive field continues smoothly from the previous stage.
        first_dilation = 1 if dilation in (1, 2) else dilation // 2
        stage = nn.HybridSequential(prefix='layers%d_' % stage_index)
        with stage.name_scope():
            stage.add(block(self.inplanes, planes, strides, dilation=first_dilation,
                            previous_dilation=dilation, downsample=downsample, **self._norm))
            self.inplanes = out_channels
            for _ in range(1, blocks):
                stage.add(block(self.inplanes, planes, dilation=dilation,
                                previous_dilation=dilation, **self._norm))
        return stage

    def features(self, F, x):
        """Stage outputs ``(c1, c2, c3, c4)`` of the four residual stages."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return c1, c2, c3, self.layer4(c3)

    def hybrid_forward(self, F, x):
        c4 = self.features(F, x)[-1]
        return self.fc(self.flat(self.avgpool(c4)))


def resnet_v1b(depth, variant='v1b', **kwargs):
    """Build a ResNetV1b of ``depth`` (18/34/50/101/152) with the stem of ``variant``."""
    if depth not in RESNET_SPECS:
        raise ValueError('ResNet depth %r is not supported; choose one of %s'
                         % (depth, sorted(RESNET_SPECS)))
    if variant not in RESNET_VARIANTS:
        raise ValueError('ResNet variant %r is not supported; choose one of %s'
                         % (variant, sorted(RESNET_VARIANTS)))
    kind, layers = RESNET_SPECS[depth]
    block = BasicBlockV1b if kind == 'basic' else BottleneckV1b
    options = dict(RESNET_VARIANTS[variant])
    options.update(kwargs)
    return ResNetV1b(block, layers, prefix='resnet%s_' % variant, **options)
