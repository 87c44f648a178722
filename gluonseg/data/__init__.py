"""Datasets and transforms for segmentation."""
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, ImageReadError, load_image, normalize_image,
                         SegmentationTrainTransform, SegmentationValTransform,
                         SegmentationTestValTransform, pad_batchify)
from .base import IGNORE_INDEX, DatasetNotFoundError, LabelCheckError, SegmentationDataset
from .shapes import SHAPE_CLASSES, ShapesSegmentation, ShapesInstance
from .pascal_voc import VOC_CLASSES, VOCSegmentation
from .pascal_aug import VOCAugSegmentation
from .folder import FolderSegmentation
from .coco import COCO_CAT_LIST, COCOSegmentation
from .coco_instance import COCOInstance
from .ade20k import ADE20KSegmentation
from .cityscapes import CitySegmentation

__all__ = ['IMAGENET_MEAN', 'IMAGENET_STD', 'ImageReadError', 'load_image', 'normalize_image',
           'SegmentationTrainTransform', 'SegmentationValTransform', 'SegmentationTestValTransform',
           'pad_batchify', 'IGNORE_INDEX', 'DatasetNotFoundError', 'LabelCheckError', 'SegmentationDataset',
           'SHAPE_CLASSES', 'ShapesSegmentation', 'ShapesInstance', 'VOC_CLASSES', 'VOCSegmentation',
           'VOCAugSegmentation', 'FolderSegmentation', 'COCO_CAT_LIST', 'COCOSegmentation',
           'COCOInstance', 'ADE20KSegmentation', 'CitySegmentation']
