"""ResNeSt backbones: split-attention ResNets (Zhang et al., "ResNeSt: Split-Attention
Networks", 2020), as GluonCV published them (``resnest50`` ... ``resnest269``).

A ResNeSt is a :class:`~.resnetv1b.ResNetV1b` with a deep stem (three 3x3 convolutions) and
average-pool downsampling in the shortcut (as v1d) whose bottlenecks replace the 3x3
convolution by a :class:`SplitAttentionConv` (radix 2, cardinality 1) and move its stride to a
3x3 average pool after it. The parameter names are those of GluonCV's published files
(``layer2.0.conv2.fc1.weight``, ...). DropBlock, with which GluonCV can train them, is left
out: GluonCV trained the published weights with drop probability 0.

====== ================= ================== =============
depth  blocks per stage  stem widths        ImageNet file
====== ================= ================== =============
50     3, 4, 6, 3        32, 32, 64         ``resnest50``
101    3, 4, 23, 3       64, 64, 128        ``resnest101``
200    3, 24, 36, 3      64, 64, 128        ``resnest200``
269    3, 30, 48, 8      64, 64, 128        ``resnest269``
====== ================= ================== =============
"""
from mxnet.gluon import nn

from .resnetv1b import ResNetV1b, _norm

__all__ = ['SplitAttentionConv', 'BottleneckResNeSt', 'resnest', 'imagenet_resnest',
           'RESNEST_SPECS']

# depth -> (blocks per stage, width of the first two stem convolutions)
RESNEST_SPECS = {
    50: ([3, 4, 6, 3], 32),
    101: ([3, 4, 23, 3], 64),
    200: ([3, 24, 36, 3], 64),
    269: ([3, 30, 48, 8], 64),
}


class SplitAttentionConv(nn.HybridBlock):
    """A 3x3 convolution into ``radix`` groups of ``channels`` maps, merged by attention.

    The grouped convolution (``conv``, ``bn``, ReLU) gives ``radix`` splits; their sum,
    averaged over the image, passes two 1x1 convolutions (``fc1`` with ``bn1`` and ReLU,
    ``fc2``) that give each split a weight per channel, normalized by a softmax across the
    splits; the output, of ``channels`` maps, is the weighted sum of the splits.

    Parameters
    ----------
    in_channels, channels : int
        Input maps and output maps.
    strides, dilation : int
        Of the 3x3 convolution (padding = dilation).
    radix : int
        Number of splits.
    reduction : int
        ``fc1`` has ``max(in_channels * radix // reduction, 32)`` channels.
    norm_layer, norm_kwargs :
        Normalization block and its keyword arguments.
    """

    def __init__(self, in_channels, channels, strides=1, dilation=1, radix=2, reduction=4,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        self.radix = radix
        inter_channels = max(in_channels * radix // reduction, 32)
        with self.name_scope():
            self.conv = nn.Conv2D(channels * radix, 3, strides, padding=dilation,
                                  dilation=dilation, groups=radix, use_bias=False,
                                  in_channels=in_channels)
            self.bn = _norm(norm_layer, norm_kwargs, channels * radix)
            self.relu = nn.Activation('relu')
            self.fc1 = nn.Conv2D(inter_channels, 1, in_channels=channels)
            self.bn1 = _norm(norm_layer, norm_kwargs, inter_channels)
            self.fc2 = nn.Conv2D(channels * radix, 1, in_channels=inter_channels)

    def hybrid_forward(self, F, x):
        splits = F.split(self.relu(self.bn(self.conv(x))), num_outputs=self.radix, axis=1)
        pooled = F.Pooling(F.add_n(*splits), kernel=(1, 1), pool_type='avg', global_pool=True)
        logits = self.fc2(self.relu(self.bn1(self.fc1(pooled))))  # (N, radix * C, 1, 1)
        weights = F.softmax(logits.reshape((0, self.radix, -1)), axis=1).reshape((0, -1, 1, 1))
        weights = F.split(weights, num_outputs=self.radix, axis=1)
        return F.add_n(*[F.broadcast_mul(w, s) for w, s in zip(weights, splits)])


class BottleneckResNeSt(nn.HybridBlock):
    """1x1 -> split-attention 3x3 -> [3x3 average pool] -> 1x1 bottleneck, with the block
    interface of :class:`~.resnetv1b.BottleneckV1b` (``ResNetV1b`` builds the stages).

    The convolutions never stride: a strided block strides with a 3x3 average pool (padding
    1, the zero padding counted) after the split attention. The first block of a dilated
    stage, the one that would stride without dilation (ResNetV1b gives it half the stage's
    dilation, so ``dilation != previous_dilation`` there), keeps that pool at stride 1, as
    GluonCV's dilated ResNeSt computes.
    """
    expansion = 4

    def __init__(self, inplanes, planes, strides=1, dilation=1, previous_dilation=1,
                 downsample=None, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        pooled = strides > 1 or dilation != previous_dilation
        with self.name_scope():
            self.conv1 = nn.Conv2D(planes, 1, use_bias=False, in_channels=inplanes)
            self.bn1 = _norm(norm_layer, norm_kwargs, planes)
            self.relu = nn.Activation('relu')
            self.conv2 = SplitAttentionConv(planes, planes, dilation=dilation,
                                            norm_layer=norm_layer, norm_kwargs=norm_kwargs)
            self.avg_pool = nn.AvgPool2D(3, strides, padding=1) if pooled else None
            self.conv3 = nn.Conv2D(planes * 4, 1, use_bias=False, in_channels=planes)
            self.bn3 = _norm(norm_layer, norm_kwargs, planes * 4)
            self.downsample = downsample

    def hybrid_forward(self, F, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.relu(self.bn1(self.conv1(x))))
        if self.avg_pool is not None:
            out = self.avg_pool(out)
        out = self.bn3(self.conv3(out))
        return F.Activation(out + residual, act_type='relu')


def resnest(depth, **kwargs):
    """Build a ResNeSt of ``depth`` (50/101/200/269): a :class:`~.resnetv1b.ResNetV1b` (its
    ``dilated``, ``classes``, ``norm_layer``, ``norm_kwargs`` apply) with
    :class:`BottleneckResNeSt` blocks."""
    if depth not in RESNEST_SPECS:
        raise ValueError('ResNeSt depth %r is not supported; choose one of %s'
                         % (depth, sorted(RESNEST_SPECS)))
    layers, stem_width = RESNEST_SPECS[depth]
    return ResNetV1b(BottleneckResNeSt, layers, deep_stem=True, stem_width=stem_width,
                     avg_down=True, prefix='resnest%d_' % depth, **kwargs)


def imagenet_resnest(depth, pretrained_base=False, root=None, **kwargs):
    """The ImageNet ResNeSt classifier that the weights table names ``resnest<depth>``;
    ``pretrained_base`` and ``root`` are ignored (a backbone is its own base)."""
    del pretrained_base, root
    return resnest(depth, **kwargs)
