"""The builder of the ImageNet ResNetV1b classifiers (``resnet50_v1s``, ...) that the weights
table (:mod:`.weights_table`) names."""
from .resnetv1b import resnet_v1b

__all__ = ['imagenet_resnet']


def imagenet_resnet(depth, variant, pretrained_base=False, root=None, **kwargs):
    """A ResNetV1b classifier; ``pretrained_base`` and ``root`` are ignored (a backbone is its
    own base)."""
    del pretrained_base, root
    return resnet_v1b(depth, variant, **kwargs)
