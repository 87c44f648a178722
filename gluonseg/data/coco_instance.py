"""COCO-format instance segmentation (boxes, class ids and binary masks) for Mask R-CNN."""
import os

import mxnet as mx
import numpy as np

from ..utils.coco_annotations import load_coco, segmentation_rle
from ..utils.paths import datasets_dir
from .base import DatasetNotFoundError
from .transforms import load_image

__all__ = ['COCOInstance']


def _mask_api():
    try:
        from pycocotools import mask as mask_utils  # lazy: optional, pip install pycocotools
    except ImportError as err:
        raise ImportError('COCOInstance needs pycocotools: pip install "gluonseg[coco]" '
                          '(or pip install pycocotools)') from err
    return mask_utils


class COCOInstance(mx.gluon.data.Dataset):
    """Objects of a COCO-format annotation file: boxes, contiguous class ids and masks.

    Layout (COCO 2017, ``scripts/datasets/prepare_coco.py``)::

        root/annotations/instances_{train,val}2017.json
        root/{train,val}2017/<file_name>

    Any COCO-format file works through ``annotation_file`` and ``image_dir``; the class names
    are those of its ``categories``.

    Parameters
    ----------
    root : str, optional
        Default ``$GLUONSEG_HOME/datasets/coco``.
    split : str, default 'train'
        ``'train'`` or ``'val'`` for COCO 2017; also decides the default of ``skip_empty``. With
        ``annotation_file`` given it only names the split.
    transform : callable, optional
        Called as ``transform(image, boxes, class_ids, masks)``; its result is returned.
    skip_empty : bool, optional
        Leave out images without a usable object. Default: True for ``split='train'`` (an
        image without targets teaches nothing), False otherwise (evaluation must see every image).
    min_object_area : float, default 1
        Objects whose annotated ``area`` is not larger than this are dropped.
    annotation_file : str, optional
        Default ``root/annotations/instances_<split>2017.json``.
    image_dir : str, optional
        Folder holding the ``file_name`` of every image; default ``root/<split>2017``.

    Notes
    -----
    ``dataset[i]`` is ``(image, boxes, class_ids, masks)``, like
    :class:`gluonseg.data.ShapesInstance`:

    - ``image``: uint8 (H, W, 3) RGB;
    - ``boxes``: float32 (N, 4) ``x1, y1, x2, y2`` in pixel indices with inclusive ends: a COCO
      box ``[x, y, w, h]`` becomes ``x, y, x + w - 1, y + h - 1``, clipped to the image;
    - ``class_ids``: int32 (N,), contiguous ids 0..K-1 in the order of ``coco.getCatIds()`` (the
      order of the file's ``categories``); :attr:`cat_ids` maps them back to the file's ids;
    - ``masks``: uint8 (N, H, W), decoded on access from polygons, uncompressed or compressed
      RLE.

    The annotation file is checked before pycocotools reads it
    (:func:`gluonseg.utils.coco_annotations.validate_coco`): non-finite coordinates, coordinates
    more than one image size outside the image, broken RLEs, unknown categories and dangling ids
    are a ``COCOAnnotationError`` naming the file, image id and annotation id; degenerate
    annotations (empty segmentation, no polygon of 3 or more points, zero-size box, RLE of
    another size than its image) are skipped with one warning counting each reason, which also
    says how many images were left without annotations.

    Dropped from the targets: crowd objects (``iscrowd=1``: one blob over a group of objects;
    neither a box nor a mask), objects marked ``ignore``, objects with ``area <=
    min_object_area``, and objects whose clipped box has no width or height (``x2 <= x1`` or
    ``y2 <= y1``). :attr:`image_ids` gives the COCO image id of every sample, for evaluation.
    """

    NAME = 'coco'
    DISPLAY_NAME = 'COCO 2017 instances'
    PREPARE_SCRIPT = 'scripts/datasets/prepare_coco.py'

    def __init__(self, root=None, split='train', transform=None, skip_empty=None, min_object_area=1,
                 annotation_file=None, image_dir=None):
        super(COCOInstance, self).__init__()
        self.root = os.path.expanduser(root if root is not None else datasets_dir(self.NAME))
        self.split = split
        self.transform = transform
        self.skip_empty = split == 'train' if skip_empty is None else bool(skip_empty)
        self.min_object_area = min_object_area
        self.annotation_file = self._require(os.path.expanduser(
            annotation_file or os.path.join(self.root, 'annotations', 'instances_%s2017.json' % split)))
        self.image_dir = self._require(os.path.expanduser(
            image_dir or os.path.join(self.root, '%s2017' % split)))
        self._mask_utils = _mask_api()
        self.coco = load_coco(self.annotation_file)
        self.cat_ids = list(self.coco.getCatIds())
        self._classes = [cat['name'] for cat in self.coco.loadCats(self.cat_ids)]
        self.json_id_to_contiguous = {cat_id: k for k, cat_id in enumerate(self.cat_ids)}
        self.image_ids, self._targets = [], []
        for image_id in sorted(self.coco.getImgIds()):
            target = self._parse(image_id)
            if self.skip_empty and not len(target[0]):
                continue
            self.image_ids.append(image_id)
            self._targets.append(target)

    # ------------------------------------------------------------------ metadata
    @property
    def classes(self):
        """Class names (the file's category names), index = class id."""
        return list(self._classes)

    @property
    def num_class(self):
        return len(self._classes)

    @property
    def contiguous_id_to_json(self):
        """Class id -> the file's category id."""
        return dict(enumerate(self.cat_ids))

    def __len__(self):
        return len(self.image_ids)

    def image_info(self, index):
        """The file's image record (``id``, ``file_name``, ``height``, ``width``, ...)."""
        return self.coco.imgs[self.image_ids[index]]

    def image_path(self, index):
        return os.path.join(self.image_dir, self.image_info(index)['file_name'])

    def targets(self, index):
        """``(boxes, class_ids)`` of sample ``index`` without reading the image or masks."""
        boxes, class_ids, _ = self._targets[index]
        return boxes.copy(), class_ids.copy()

    # ------------------------------------------------------------------ parsing
    def _require(self, path):
        if not os.path.exists(path):
            raise DatasetNotFoundError(self.DISPLAY_NAME, path, self.PREPARE_SCRIPT,
                                       'or pass annotation_file= and image_dir= for other COCO-format data')
        return path

    def _parse(self, image_id):
        """Usable objects of an image: (boxes (N,4) float32, class ids (N,) int32, annotations)."""
        info = self.coco.imgs[image_id]
        height, width = info['height'], info['width']
        boxes, class_ids, anns = [], [], []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann.get('iscrowd', 0) or ann.get('ignore', 0):
                continue
            segmentation = ann['segmentation']
            rle = None
            area = ann.get('area')
            if area is None:
                rle = segmentation_rle(segmentation, height, width)
                area = float(self._mask_utils.area(rle))
            if area <= self.min_object_area:
                continue
            bbox = ann.get('bbox')
            if bbox is None:
                bbox = self._mask_utils.toBbox(rle if rle is not None
                                               else segmentation_rle(segmentation, height, width)).tolist()
            x, y, w, h = [float(v) for v in bbox]
            # plain min/max: np.clip on scalars would cost seconds over COCO train's 860k objects
            x1, y1 = min(max(x, 0.0), width - 1.0), min(max(y, 0.0), height - 1.0)
            x2 = min(max(x + max(w - 1.0, 0.0), 0.0), width - 1.0)
            y2 = min(max(y + max(h - 1.0, 0.0), 0.0), height - 1.0)
            if x2 <= x1 or y2 <= y1:
                continue
            boxes.append((x1, y1, x2, y2))
            class_ids.append(self.json_id_to_contiguous[ann['category_id']])
            anns.append(ann)
        return (np.array(boxes, dtype=np.float32).reshape(-1, 4),
                np.array(class_ids, dtype=np.int32), anns)

    def masks(self, index):
        """uint8 (N, H, W) binary masks of the objects of sample ``index``."""
        info = self.image_info(index)
        height, width = info['height'], info['width']
        anns = self._targets[index][2]
        masks = np.zeros((len(anns), height, width), dtype=np.uint8)
        for n, ann in enumerate(anns):
            masks[n] = self._mask_utils.decode(segmentation_rle(ann['segmentation'], height, width))
        return masks

    # ------------------------------------------------------------------ samples
    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError('index %d out of range for COCOInstance of length %d' % (index, len(self)))
        index = int(index) % len(self)
        info = self.image_info(index)
        path = self.image_path(index)
        image = load_image(path)
        if image.shape[:2] != (info['height'], info['width']):
            raise ValueError('%s is %dx%d but %s says %dx%d (image id %d)'
                             % (path, image.shape[0], image.shape[1], self.annotation_file,
                                info['height'], info['width'], info['id']))
        boxes, class_ids = self.targets(index)
        masks = self.masks(index)
        if self.transform is not None:
            return self.transform(image, boxes, class_ids, masks)
        return image, boxes, class_ids, masks

    def __repr__(self):
        return 'COCOInstance(annotation_file=%r, split=%r, len=%d, num_class=%d)' % (
            self.annotation_file, self.split, len(self), self.num_class)
