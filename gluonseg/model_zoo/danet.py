"""DANet: position and channel self-attention on a dilated ResNet (Fu et al., CVPR 2019,
"Dual Attention Network for Scene Segmentation").

Two branches reduce the stage-4 features to ``in/4`` channels; one re-weights every position
by its similarity to every other position (:class:`PositionAttention`), the other every
channel by its similarity to every other channel (:class:`ChannelAttention`). Each branch has
a classifier, and so has their sum: the three logits are all trained (summed losses, the
published files were trained so, without the auxiliary FCN head), and the sum's is the
network's output.
"""
import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from .segbase import SegBaseModel, conv_bn_relu, resize_like

__all__ = ['DANet', 'DANetHead', 'PositionAttention', 'ChannelAttention']


class PositionAttention(nn.HybridBlock):
    """Position attention module (the paper's PAM): each position becomes ``x`` plus
    ``gamma`` times the sum of the values at all positions, weighted by the softmax over
    positions of its query's dot products with their keys.

    Queries and keys have ``in/8`` channels; ``gamma`` (one learned scalar) starts at 0, so
    the module starts as the identity. Memory grows with (H W)^2 of the features.
    """

    def __init__(self, in_channels, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.query_conv = nn.Conv2D(in_channels // 8, 1, in_channels=in_channels)
            self.key_conv = nn.Conv2D(in_channels // 8, 1, in_channels=in_channels)
            self.value_conv = nn.Conv2D(in_channels, 1, in_channels=in_channels)
            self.gamma = self.params.get('gamma', shape=(1,), init=mx.init.Zero())

    def hybrid_forward(self, F, x, gamma):
        # (N, C, H, W) -> (N, C, H W); reshape codes keep any batch and size valid.
        query = F.reshape(self.query_conv(x), shape=(0, 0, -1))
        key = F.reshape(self.key_conv(x), shape=(0, 0, -1))
        value = F.reshape(self.value_conv(x), shape=(0, 0, -1))
        # attention[n, i, j]: the weight of position j in the new value of position i.
        attention = F.softmax(F.batch_dot(query, key, transpose_a=True), axis=-1)
        out = F.batch_dot(value, attention, transpose_b=True)
        return F.broadcast_mul(gamma, F.reshape_like(out, x)) + x


class ChannelAttention(nn.HybridBlock):
    """Channel attention module (the paper's CAM): each channel becomes ``x`` plus ``gamma``
    times the sum of all channels, weighted by the softmax over channels of the *negated* dot
    products of its map with theirs (as the authors' code computes it: ``max - energy``,
    whose softmax is that of ``-energy``; the paper writes ``+energy``).

    No parameters but ``gamma`` (one learned scalar, starting at 0).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.gamma = self.params.get('gamma', shape=(1,), init=mx.init.Zero())

    def hybrid_forward(self, F, x, gamma):
        features = F.reshape(x, shape=(0, 0, -1))  # (N, C, H W)
        energy = F.batch_dot(features, features, transpose_b=True)  # (N, C, C)
        attention = F.softmax(-energy, axis=-1)
        out = F.batch_dot(attention, features)
        return F.broadcast_mul(gamma, F.reshape_like(out, x)) + x


def _classifier(nclass, in_channels):
    """A 1x1 convolution with bias, alone in a sequence: the published files name its
    weights ``conv6.0`` (``conv7.0``, ``conv8.0``)."""
    block = nn.HybridSequential()
    block.add(nn.Conv2D(nclass, 1, in_channels=in_channels))
    return block


class DANetHead(nn.HybridBlock):
    """The two attention branches on stage-4 features and the three classifiers.

    Each branch: 3x3 conv to ``in/4`` channels (``conv5a``, ``conv5c``), its attention
    module (``sa``, ``sc``), another 3x3 conv (``conv51``, ``conv52``). Returns the logits
    of the branches' sum (``conv8``), of the position branch (``conv6``) and of the channel
    branch (``conv7``), each after dropout 0.1, at the features' size.
    """

    def __init__(self, in_channels, nclass, norm_layer=nn.BatchNorm, norm_kwargs=None,
                 **kwargs):
        super().__init__(**kwargs)
        channels = in_channels // 4
        norm = dict(norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        with self.name_scope():
            self.conv5a = conv_bn_relu(channels, 3, in_channels, padding=1, **norm)
            self.conv5c = conv_bn_relu(channels, 3, in_channels, padding=1, **norm)
            self.sa = PositionAttention(channels)
            self.sc = ChannelAttention()
            self.conv51 = conv_bn_relu(channels, 3, channels, padding=1, **norm)
            self.conv52 = conv_bn_relu(channels, 3, channels, padding=1, **norm)
            self.conv6 = _classifier(nclass, channels)
            self.conv7 = _classifier(nclass, channels)
            self.conv8 = _classifier(nclass, channels)

    def hybrid_forward(self, F, x):
        position = self.conv51(self.sa(self.conv5a(x)))
        channel = self.conv52(self.sc(self.conv5c(x)))
        return (self.conv8(F.Dropout(position + channel, p=0.1)),
                self.conv6(F.Dropout(position, p=0.1)),
                self.conv7(F.Dropout(channel, p=0.1)))


class DANet(SegBaseModel):
    """Dual attention network on a dilated ResNet (output stride 8).

    While training (``autograd.is_training()``) the network returns the three logits
    ``(fused, position, channel)``, each (N, nclass, H, W) at the input's size; the trainer
    sums their losses with :attr:`training_output_weights`. Outside training it returns
    ``fused`` alone, and a hybridized network's inference graph (one graph per mode, as
    :class:`~gluonseg.model_zoo.segbase.SegmentationNetwork` keeps them; also what
    ``export``, ONNX export and ``gluonseg.optimize`` use) leaves the two branch classifiers
    out. :meth:`all_outputs` gives all three at inference.

    Parameters
    ----------
    nclass : int
        Number of classes.
    backbone : str
        ``'resnet50'``, ``'resnet101'``, ``'resnet152'`` (deep-stem v1s) or an explicit
        variant such as ``'resnet18_v1b'``.
    aux : bool
        Must be False: DANet has no auxiliary FCN head (the published files have none).
    **kwargs
        ``pretrained_base``, ``root``, ``norm_layer``, ``norm_kwargs`` as for
        :class:`~gluonseg.model_zoo.segbase.SegBaseModel`.

    Raises
    ------
    ValueError
        For ``aux=True``.
    """

    #: Loss weight of each training output (fused, position, channel): the paper sums them.
    training_output_weights = (1.0, 1.0, 1.0)
    #: The branch outputs are computed only while training (a graph per mode when hybridized).
    training_only_outputs = True

    def __init__(self, nclass, backbone='resnet50', aux=False, **kwargs):
        if aux:
            raise ValueError('DANet has no auxiliary FCN head (aux=True): its extra training '
                             'outputs are the position and channel attention logits, weighted '
                             'by DANet.training_output_weights; build it with aux=False')
        super().__init__(nclass, backbone=backbone, aux=False, **kwargs)
        with self.name_scope():
            self.head = DANetHead(self.stage4_channels, nclass, **self._norm)

    def hybrid_forward(self, F, x):
        # A hybridized network takes this branch once per mode, when that graph is traced.
        if autograd.is_training():
            return tuple(self._outputs(F, x, 3))
        return self._outputs(F, x, 1)[0]

    def _outputs(self, F, x, count):
        """The first ``count`` of the head's logits, resized to the input's size. A hybridized
        graph keeps only what it returns (for ``count=1``: not the two branch classifiers);
        unhybridized, the head also runs those two 1x1 convolutions (about 0.1% of the
        multiply-adds) and they are dropped."""
        logits = self.head(self.base_forward(x)[1])[:count]
        return [resize_like(F, out, x, self.reproducible_gradients) for out in logits]

    def all_outputs(self, x):
        """The three logits ``(fused, position, channel)`` at inference (BatchNorm's running
        statistics, no dropout), each (N, nclass, H, W) at the input's size.

        Runs the blocks one by one (hybridized ones through their own graphs), not the
        network's inference graph, which computes ``fused`` alone.

        Parameters
        ----------
        x : NDArray
            A normalized batch (N, 3, H, W).
        """
        with autograd.predict_mode():
            return tuple(self._outputs(mx.nd, x, 3))
