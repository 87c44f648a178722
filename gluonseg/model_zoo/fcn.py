"""FCN: a dilated ResNet and one convolutional head (Long et al., CVPR 2015)."""
from .segbase import FCNHead, SegBaseModel, register_semantic_models

__all__ = ['FCN']


class FCN(SegBaseModel):
    """Fully convolutional network on a dilated ResNet (output stride 8).

    See :class:`SegBaseModel` for the arguments and the outputs.
    """

    def __init__(self, nclass, backbone='resnet50', **kwargs):
        super().__init__(nclass, backbone=backbone, **kwargs)
        with self.name_scope():
            self.head = FCNHead(self.stage4_channels, nclass, **self._norm)


# GluonCV's published FCN weights: name -> (SHA-1, metrics in %).
PUBLISHED = {
    'fcn_resnet101_voc': ('12c2b9b3be7d4e133e52477150a9b3e616626a82', {'mIoU': 83.6}),
    'fcn_resnet101_coco': ('766cdf9cc3e5b980b141643f054db5b48863f634',
                           {'pixAcc': 92.2, 'mIoU': 66.2}),
    'fcn_resnet50_ade': ('3479525af7bdbf345e74e150aaae2e48174c0c5f',
                         {'pixAcc': 79.0, 'mIoU': 39.5}),
    'fcn_resnet101_ade': ('d544440a35586f662ed1a5405ab9aa89cd750558',
                          {'pixAcc': 80.6, 'mIoU': 41.6}),
}

register_semantic_models('fcn', FCN, 'FCN', PUBLISHED)
