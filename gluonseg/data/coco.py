"""COCO 2017 instance annotations rendered as 21-class (Pascal VOC) semantic masks."""
import json
import os
import tempfile
import warnings

import numpy as np
from tqdm import tqdm

from ..utils.coco_annotations import load_coco, segmentation_rle
from .base import IGNORE_INDEX, SegmentationDataset
from .pascal_voc import VOC_CLASSES

__all__ = ['COCO_CAT_LIST', 'COCOSegmentation']

# Position = VOC class id, value = COCO category id (0: background). Every COCO category not
# listed is background.
COCO_CAT_LIST = (0, 5, 2, 16, 9, 44, 6, 3, 17, 62, 21, 67, 18, 19, 4, 1, 64, 20, 63, 7, 72)

# 2: annotations are checked and degenerate ones skipped (gluonseg.utils.coco_annotations)
_INDEX_VERSION = 2


def _mask_api():
    try:
        from pycocotools import mask as mask_utils  # lazy: optional, pip install pycocotools
    except ImportError as err:
        raise ImportError('COCOSegmentation needs pycocotools: pip install "gluonseg[coco]" '
                          '(or pip install pycocotools)') from err
    return mask_utils


class COCOSegmentation(SegmentationDataset):
    """COCO 2017 images with the 20 Pascal VOC object classes as a semantic mask.

    Layout::

        root/annotations/instances_{train,val}2017.json
        root/{train,val}2017/<file_name>.jpg

    Parameters
    ----------
    root : str, optional
        Default ``$GLUONSEG_HOME/datasets/coco`` (``scripts/datasets/prepare_coco.py``).
    split : {'train', 'val'}, default 'train'
    transform : callable, optional
        Joint ``transform(image, mask) -> (image, mask)``.
    min_pixels : int or None, default 1000
        Keep only images with more than this many pixels of the 20 VOC classes (GluonCV's filter;
        it keeps about 92.5K training images). ``None`` keeps every image.
    crowd : {'ignore', 'label'}, default 'ignore'
        ``iscrowd`` regions (one coarse blob over a group of objects, background included) become
        the ignore label (255), so they are neither trained on nor scored. ``'label'`` paints
        them with their class, as GluonCV does; use it to reproduce GluonCV's COCO numbers.

    Notes
    -----
    Category mapping: :data:`COCO_CAT_LIST` (e.g. COCO 1 person -> VOC 15, COCO 63 couch -> VOC
    18 sofa). Where instances overlap, the first annotation in the file wins.

    The annotation file is checked before pycocotools reads it
    (:func:`gluonseg.utils.coco_annotations.validate_coco`): non-finite coordinates, coordinates
    more than one image size outside the image, broken RLEs and dangling ids are a
    ``COCOAnnotationError`` naming the file, image id and annotation id; degenerate annotations
    (empty segmentation, no polygon of 3 or more points, zero-size box, RLE of another size than
    its image) are skipped with one warning counting each reason.

    Building the list of images that pass ``min_pixels`` decodes every mask once (minutes on
    train2017). The result is cached as ``root/annotations/gluonseg_<split>2017_ids.json``,
    written atomically, and rebuilt when the annotation file's size or modification time, or
    ``min_pixels``/``crowd``, change. If that folder is read-only the list is rebuilt each time.
    """

    CLASSES = VOC_CLASSES
    NAME = 'coco'
    DISPLAY_NAME = 'COCO 2017'
    PREPARE_SCRIPT = 'scripts/datasets/prepare_coco.py'
    SPLITS = ('train', 'val')

    def __init__(self, root=None, split='train', transform=None, min_pixels=1000, crowd='ignore'):
        super(COCOSegmentation, self).__init__(root, split, transform)
        if split not in self.SPLITS:
            raise ValueError('unknown COCO split %r; choose one of %s' % (split, ', '.join(self.SPLITS)))
        if crowd not in ('ignore', 'label'):
            raise ValueError("crowd must be 'ignore' or 'label', got %r" % (crowd,))
        self.min_pixels = min_pixels
        self.crowd = crowd
        self.annotation_file = self._require(
            os.path.join(self.root, 'annotations', 'instances_%s2017.json' % split))
        self.image_dir = self._require(os.path.join(self.root, '%s2017' % split))
        self._mask_utils = _mask_api()
        self.coco = load_coco(self.annotation_file)
        self._voc_class = {coco_id: voc_id for voc_id, coco_id in enumerate(COCO_CAT_LIST) if coco_id}
        self.index_file = os.path.join(os.path.dirname(self.annotation_file),
                                       'gluonseg_%s2017_ids.json' % split)
        if min_pixels is None:
            self.ids = sorted(self.coco.imgs)
        else:
            self.ids = self._usable_ids()

    # ------------------------------------------------------------------ masks
    def _mask(self, image_id):
        info = self.coco.imgs[image_id]
        height, width = info['height'], info['width']
        mask = np.zeros((height, width), dtype=np.int32)
        taken = np.zeros((height, width), dtype=bool)
        for ann in self.coco.imgToAnns.get(image_id, []):
            voc_id = self._voc_class.get(ann['category_id'])
            if voc_id is None:
                continue
            region = self._mask_utils.decode(
                segmentation_rle(ann['segmentation'], height, width)).astype(bool)
            region &= ~taken  # first annotation wins
            mask[region] = IGNORE_INDEX if ann.get('iscrowd', 0) and self.crowd == 'ignore' else voc_id
            taken |= region
        return mask

    def _load(self, index):
        image_id = self.ids[index]
        path = os.path.join(self.image_dir, self.coco.imgs[image_id]['file_name'])
        return self._read_image(path), self._mask(image_id), '%s (COCO image id %d)' % (path, image_id)

    # ------------------------------------------------------------------ usable-id index
    def _index_key(self):
        stat = os.stat(self.annotation_file)
        return {'version': _INDEX_VERSION, 'annotation_file': os.path.basename(self.annotation_file),
                'size': stat.st_size, 'mtime_ns': stat.st_mtime_ns, 'min_pixels': self.min_pixels,
                'crowd': self.crowd}

    def _usable_ids(self):
        key = self._index_key()
        try:
            with open(self.index_file) as f:
                cached = json.load(f)
            if cached.get('key') == key:
                return cached['ids']
        except (OSError, ValueError, KeyError):
            pass  # missing or unreadable: rebuild
        ids = self._build_index()
        self._write_index({'key': key, 'ids': ids})
        return ids

    def _build_index(self):
        image_ids = sorted(self.coco.imgs)
        image_ids = tqdm(image_ids, desc='COCO %s: images with > %d VOC-class pixels'
                         % (self.split, self.min_pixels), disable=len(image_ids) < 1000)
        usable = []
        for image_id in image_ids:
            mask = self._mask(image_id)
            if np.count_nonzero((mask > 0) & (mask != IGNORE_INDEX)) > self.min_pixels:
                usable.append(int(image_id))
        return usable

    def _write_index(self, content):
        directory = os.path.dirname(self.index_file)
        try:
            fd, tmp = tempfile.mkstemp(prefix='.gluonseg_ids_', suffix='.tmp', dir=directory)
            try:
                with os.fdopen(fd, 'w') as f:
                    json.dump(content, f)
                os.replace(tmp, self.index_file)  # atomic: readers never see a partial file
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as err:
            warnings.warn('could not cache the COCO id list at %s (%s); it will be rebuilt next time'
                          % (self.index_file, err))
