"""Feature pyramid (FPN) on a ResNetV1b, with GluonCV's weight names.

``FeaturePyramid`` takes the four stage outputs C2..C5 and returns P2..P6 (256 channels,
strides 4..64):

* lateral 1x1 convs with bias (``P{2..5}_conv_lat``);
* top-down: the coarser merged map is upsampled x2 (nearest), cropped to the lateral's
  size (odd sizes) and added;
* a 3x3 conv with bias on each merged map (``P{2..5}_conv1``);
* P6 is a 3x3 stride-2 conv on the *lateral* output of C5 (``P6_conv1``); Detectron
  max-pools P5 instead, the published models do not.

``FPNFeatures`` is the backbone plus pyramid. GluonCV built it as a SymbolBlock, so its
published files name these arrays after MXNet symbols (``features.resnetv1b_layers1_conv0_
weight``, ``features.P2_conv_lat_bias``) instead of the usual structural names. gluonseg
builds an ordinary structural block (``body.layer1.0.conv1``, ``fpn.P2_conv_lat``) and
renames at one place: :meth:`FPNFeatures._collect_params_with_prefix`, which Gluon's
``save_parameters``/``load_parameters`` and gluonseg's ``load_weights`` all use. Files
written by gluonseg therefore have the published layout, and published files load
strictly. :meth:`FPNFeatures.symbol_names` lists the renaming.
"""
import mxnet as mx
from mxnet.gluon import nn

from ...utils.mxnet_compat import child_blocks

__all__ = ['FeaturePyramid', 'ResNetStages', 'FPNFeatures', 'resnet_symbol_names']


class FeaturePyramid(nn.HybridBlock):
    """P2..P6 from C2..C5.

    Parameters
    ----------
    in_channels : 4 ints
        Channels of C2, C3, C4, C5.
    channels : int
        Channels of every pyramid level.
    """

    def __init__(self, in_channels, channels=256, **kwargs):
        super().__init__(**kwargs)
        if len(in_channels) != 4:
            raise ValueError('FeaturePyramid takes C2..C5: expected 4 input widths, got %r'
                             % (in_channels,))
        init = dict(weight_initializer=mx.init.Xavier(rnd_type='uniform', factor_type='in',
                                                      magnitude=1))
        with self.name_scope():
            for level, width in zip((2, 3, 4, 5), in_channels):
                setattr(self, 'P%d_conv_lat' % level,
                        nn.Conv2D(channels, 1, in_channels=width, **init))
                setattr(self, 'P%d_conv1' % level,
                        nn.Conv2D(channels, 3, padding=1, in_channels=channels, **init))
            self.P6_conv1 = nn.Conv2D(channels, 3, strides=2, padding=1, in_channels=channels,
                                      **init)

    def hybrid_forward(self, F, c2, c3, c4, c5):
        merged = self.P5_conv_lat(c5)
        p6 = self.P6_conv1(merged)
        outputs = [self.P5_conv1(merged)]
        for level, c in ((4, c4), (3, c3), (2, c2)):
            lateral = getattr(self, 'P%d_conv_lat' % level)(c)
            upsampled = F.UpSampling(merged, scale=2, sample_type='nearest')
            merged = lateral + F.slice_like(upsampled, lateral, axes=(2, 3))
            outputs.append(getattr(self, 'P%d_conv1' % level)(merged))
        return tuple(outputs[::-1]) + (p6,)


class ResNetStages(nn.HybridBlock):
    """The stem and four stages of a ResNetV1b (no classifier); returns C2..C5."""

    def __init__(self, resnet, **kwargs):
        super().__init__(**kwargs)
        self.conv1, self.bn1, self.relu, self.maxpool = (resnet.conv1, resnet.bn1,
                                                         resnet.relu, resnet.maxpool)
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4
        self.out_channels = tuple(64 * 2 ** i * type(resnet.layer1[0]).expansion
                                  for i in range(4))

    def hybrid_forward(self, F, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return c2, c3, c4, self.layer4(c4)


def _counter_name(counts, kind, scope):
    index = counts.get((scope, kind), 0)
    counts[(scope, kind)] = index + 1
    return '%s%s%d' % (scope, kind, index)


def _kind(block):
    if isinstance(block, nn.Conv2D):
        return 'conv'
    if 'norm' in type(block).__name__.lower():
        return 'batchnorm'
    return None


def resnet_symbol_names(stages, root):
    """{structural block path: MXNet symbol name} for the convs and norms of ``stages``.

    MXNet names a layer ``<scope><type><count>`` in the order layers are created: the stem
    (and its deep-stem convs) in the root scope, the residual blocks of stage s in scope
    ``layers{s}_`` (numbered across blocks, shortcut excluded), and the shortcut of stage s
    in ``down{s}_``. ``root`` is ``'resnetv1b_'`` or ``'resnetv1d_'``.
    """
    counts, names = {}, {}

    def visit(path, block, scope):
        kind = _kind(block)
        if kind is not None:
            names[path] = _counter_name(counts, kind, scope)

    stem = stages.conv1
    if isinstance(stem, nn.HybridSequential):
        for i, layer in enumerate(stem):
            visit('conv1.%d' % i, layer, root)
    else:
        visit('conv1', stem, root)
    visit('bn1', stages.bn1, root)
    for s in range(1, 5):
        layer = getattr(stages, 'layer%d' % s)
        for b, block in enumerate(layer):
            for child_name, child in child_blocks(block).items():
                if child_name == 'downsample':
                    continue
                visit('layer%d.%d.%s' % (s, b, child_name), child, '%slayers%d_' % (root, s))
            if getattr(block, 'downsample', None) is not None:
                for i, child in enumerate(block.downsample):
                    visit('layer%d.%d.downsample.%d' % (s, b, i), child,
                          '%sdown%d_' % (root, s))
    return names


class FPNFeatures(nn.HybridBlock):
    """ResNetV1b stages + :class:`FeaturePyramid`; returns (P2, P3, P4, P5, P6).

    Parameters are *saved and loaded* under GluonCV's symbol names (module docstring).

    Parameters
    ----------
    resnet : ResNetV1b
        Its stem and stages are used (not its classifier).
    symbol_prefix : str
        ``'resnetv1b_'`` or ``'resnetv1d_'``: the root of the backbone's symbol names.
    channels : int
        Pyramid width.
    """

    def __init__(self, resnet, symbol_prefix, channels=256, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = ResNetStages(resnet)
            self.fpn = FeaturePyramid(self.body.out_channels, channels)
        block_names = {'body.' + k: v
                       for k, v in resnet_symbol_names(self.body, symbol_prefix).items()}
        block_names.update({'fpn.' + k: k for k in child_blocks(self.fpn)})
        self._block_symbols = block_names

    def hybrid_forward(self, F, x):
        return self.fpn(*self.body(x))

    def symbol_names(self):
        """{structural parameter name: name in the weight file}, e.g.
        ``'body.layer1.0.conv1.weight' -> 'resnetv1b_layers1_conv0_weight'``."""
        names = {}
        for key in super()._collect_params_with_prefix():
            block, _, param = key.rpartition('.')
            if block not in self._block_symbols:
                raise KeyError('FPNFeatures: no symbol name for parameter %r' % key)
            names[key] = '%s_%s' % (self._block_symbols[block], param)
        return names

    def _collect_params_with_prefix(self, prefix=''):
        # The one place where names are translated: save/load and load_weights read this.
        params = super()._collect_params_with_prefix()
        names = self.symbol_names()
        if prefix:
            prefix += '.'
        return {prefix + names[key]: param for key, param in params.items()}
