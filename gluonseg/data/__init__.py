"""Datasets and transforms for segmentation.

The names below are imported on first use (PEP 562): the dataset readers import MXNet, and
``gluonseg.data.catalog`` and ``gluonseg.data.classes`` (what ``gluonseg models`` reads) must
not pay for it.
"""
from ..utils.lazy import lazy_exports

# module of this package -> the names it defines
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    'transforms': ('IMAGENET_MEAN', 'IMAGENET_STD', 'ImageReadError', 'load_image',
                   'normalize_image', 'SegmentationTrainTransform', 'SegmentationValTransform',
                   'SegmentationTestValTransform', 'pad_batchify'),
    'base': ('IGNORE_INDEX', 'DatasetNotFoundError', 'LabelCheckError', 'SegmentationDataset'),
    'shapes': ('SHAPE_CLASSES', 'ShapesSegmentation', 'ShapesInstance'),
    'pascal_voc': ('VOC_CLASSES', 'VOCSegmentation'),
    'pascal_aug': ('VOCAugSegmentation',),
    'folder': ('FolderSegmentation',),
    'coco': ('COCO_CAT_LIST', 'COCOSegmentation'),
    'coco_instance': ('COCOInstance',),
    'ade20k': ('ADE20KSegmentation',),
    'cityscapes': ('CitySegmentation',),
})
