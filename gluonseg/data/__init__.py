"""Datasets and transforms for segmentation."""
from .transforms import (IMAGENET_MEAN, IMAGENET_STD, load_image, normalize_image,  # noqa: F401
                         SegmentationTrainTransform, SegmentationValTransform,
                         SegmentationTestValTransform, pad_batchify)
from .base import IGNORE_INDEX, DatasetNotFoundError, SegmentationDataset  # noqa: F401
from .shapes import SHAPE_CLASSES, ShapesSegmentation, ShapesInstance  # noqa: F401
from .pascal_voc import VOC_CLASSES, VOCSegmentation  # noqa: F401
from .pascal_aug import VOCAugSegmentation  # noqa: F401
from .folder import FolderSegmentation  # noqa: F401
from .coco import COCO_CAT_LIST, COCOSegmentation  # noqa: F401
