"""FCN: a dilated ResNet and one convolutional head (Long et al., CVPR 2015)."""
from .segbase import FCNHead, SegBaseModel

__all__ = ['FCN']


class FCN(SegBaseModel):
    """Fully convolutional network on a dilated ResNet (output stride 8).

    See :class:`SegBaseModel` for the arguments and the outputs.
    """

    def __init__(self, nclass, backbone='resnet50', **kwargs):
        super().__init__(nclass, backbone=backbone, **kwargs)
        with self.name_scope():
            self.head = FCNHead(self.stage4_channels, nclass, **self._norm)
