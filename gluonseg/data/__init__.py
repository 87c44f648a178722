"""Datasets and transforms for segmentation.

The names below are imported on first use (PEP 562): the dataset readers import MXNet, and
``gluonseg.data.catalog`` and ``gluonseg.data.classes`` (what ``gluonseg models`` reads) must
not pay for it.
"""
from importlib import import_module as _import_module
from importlib.util import find_spec as _find_spec

# name -> the module of this package that defines it
_EXPORTS = {
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
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [name for names in _EXPORTS.values() for name in names]


def __getattr__(name):
    if name in _MODULE_OF:
        value = getattr(_import_module('%s.%s' % (__name__, _MODULE_OF[name])), name)
        globals()[name] = value  # later accesses skip this function
        return value
    if not name.startswith('_') and _find_spec('%s.%s' % (__name__, name)):
        return _import_module('%s.%s' % (__name__, name))  # a submodule, e.g. data.shapes
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


def __dir__():
    return sorted(set(globals()) | set(__all__))
