"""R-CNN heads on pooled RoI features: box features, class/box predictors, masks.

Box features
    C4: the backbone's last stage (``top_features``, stride 2: 14x14 RoIs -> 7x7) then a
    global average pool. FPN: an optional 3x3/2 average pool (14x14 -> 7x7; the ResNet-18
    model pools 7x7 directly and skips it) then two Dense 1024 + ReLU (``box_features``).
Predictors
    ``class_predictor`` Dense(classes + 1, background first) and ``box_predictor``
    Dense(4 * classes): class-specific offsets, ``4 * c .. 4 * c + 3`` for class c.
Masks (:class:`MaskHead`)
    C4: ConvTranspose 2x2/2 -> ReLU -> 1x1 conv to one logit map per class. FPN: ``num_convs``
    3x3 convs + ReLU before the ConvTranspose. Every conv has a bias.
"""
import mxnet as mx
from mxnet.gluon import nn

__all__ = ['fpn_box_features', 'box_predictors', 'MaskHead', 'select_class_masks']


def fpn_box_features(pool=True, units=1024, in_units=0):
    """[AvgPool 3x3/2 pad 1,] Dense(units) + ReLU, Dense(units) + ReLU (keys
    ``{1,3}.weight`` with the pool, ``{0,2}.weight`` without); ``in_units`` is the size of
    the flattened (pooled) RoI features (0: inferred at the first call)."""
    block = nn.HybridSequential()
    if pool:
        block.add(nn.AvgPool2D(pool_size=3, strides=2, padding=1))
    init = dict(weight_initializer=mx.init.Normal(0.01))
    block.add(nn.Dense(units, in_units=in_units, **init), nn.Activation('relu'),
              nn.Dense(units, in_units=units, **init), nn.Activation('relu'))
    return block


def box_predictors(num_classes, in_units=0):
    """``(class_predictor, box_predictor)``: Dense(num_classes + 1) logits (background is
    class 0) and Dense(4 * num_classes) class-specific box offsets, on ``in_units``-d
    box features."""
    return (nn.Dense(num_classes + 1, in_units=in_units,
                     weight_initializer=mx.init.Normal(0.01)),
            nn.Dense(num_classes * 4, in_units=in_units,
                     weight_initializer=mx.init.Normal(0.001)))


class MaskHead(nn.HybridBlock):
    """Per-class mask logits (R, num_classes, 2S, 2S) of pooled features (R, C, S, S).

    Parameters
    ----------
    num_classes : int
        One logit map per foreground class.
    channels : int
        Width of the convs and of the transposed conv.
    num_convs : int
        3x3 convs before the transposed conv (0 for C4, 4 for FPN, 2 for FPN ResNet-18).
        Without them the transposed conv is ``deconv`` itself; with them ``deconv`` is a
        sequence whose last element is the transposed conv.
    in_channels : int
        Channels of the pooled features (0: inferred at the first call).
    """

    def __init__(self, num_classes, channels=256, num_convs=0, in_channels=0, **kwargs):
        super().__init__(**kwargs)
        init = dict(weight_initializer=_mask_init())
        with self.name_scope():
            upsample = nn.Conv2DTranspose(channels, 2, strides=2,
                                          in_channels=channels if num_convs else in_channels,
                                          **init)
            if num_convs:
                self.deconv = nn.HybridSequential()
                for i in range(num_convs):
                    self.deconv.add(nn.Conv2D(channels, 3, padding=1,
                                              in_channels=channels if i else in_channels,
                                              **init),
                                    nn.Activation('relu'))
                self.deconv.add(upsample)
            else:
                self.deconv = upsample
        self.mask = self.new_predictor(num_classes, channels)

    def new_predictor(self, num_classes, in_channels):
        """A freshly initialised 1x1 class predictor (``mask``), created in this block's
        scope; :meth:`~.mask_rcnn.MaskRCNN.reset_class` swaps it in."""
        with self.name_scope():
            return nn.Conv2D(num_classes, 1, in_channels=in_channels,
                             weight_initializer=_mask_init())

    def hybrid_forward(self, F, x):
        return self.mask(F.relu(self.deconv(x)))


def _mask_init():
    return mx.init.Xavier(rnd_type='gaussian', factor_type='out', magnitude=2)


def select_class_masks(F, logits, class_ids, num_classes):
    """Logits (B, K, C, M, M) and class ids (B, K, 1) -> the logit map of each row's class
    (B, K, M, M). A row with id -1 (no detection) gets logit 0."""
    onehot = F.one_hot(class_ids.reshape((0, 0)), depth=num_classes)
    return F.sum(F.broadcast_mul(logits, onehot.reshape((0, 0, -1, 1, 1))), axis=2)
