"""Cityscapes fine annotations as the 19 training classes."""
import os

import numpy as np

from .base import IGNORE_INDEX, SegmentationDataset, read_label_png
from .classes import CITYSCAPES_CLASSES

__all__ = ['CitySegmentation', 'CITYSCAPES_TRAIN_IDS', 'cityscapes_train_ids']

# labelId -> train id of the 19 evaluated classes (official cityscapesScripts table); every
# other labelId (unlabeled, ego vehicle, ground, parking, rail track, guard rail, bridge,
# tunnel, polegroup, caravan, trailer, license plate, ...) is ignored.
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                        24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}

_LOOKUP = np.full(256, IGNORE_INDEX, dtype=np.int32)
for _label_id, _train_id in CITYSCAPES_TRAIN_IDS.items():
    _LOOKUP[_label_id] = _train_id

_SPLIT_FOLDERS = {'train': ('train',), 'val': ('val',), 'trainval': ('train', 'val'), 'test': ('test',)}
_IMAGE_SUFFIX = '_leftImg8bit.png'
_LABEL_SUFFIX = '_gtFine_labelIds.png'


def cityscapes_train_ids(label_ids):
    """Map a ``*_gtFine_labelIds.png`` array (labelIds 0..33) to train ids 0..18, others 255."""
    label_ids = np.asarray(label_ids)
    inside = (label_ids >= 0) & (label_ids < len(_LOOKUP))
    return np.where(inside, _LOOKUP[np.clip(label_ids, 0, len(_LOOKUP) - 1)], IGNORE_INDEX).astype(np.int32)


class CitySegmentation(SegmentationDataset):
    """Cityscapes with fine annotations: 19 classes, 2,975 train / 500 val / 1,525 test images.

    Layout (the official ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``
    unzipped into one folder; downloading them needs a cityscapes-dataset.com login)::

        root/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
        root/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

    Parameters
    ----------
    root : str, optional
        Default ``$GLUONSEG_HOME/datasets/citys``.
    split : {'train', 'val', 'trainval', 'test'}, default 'train'
        ``'test'`` returns images only (its public labels are blank).
    transform : callable, optional
        Joint ``transform(image, mask) -> (image, mask)``.

    Notes
    -----
    Masks are train ids: :data:`CITYSCAPES_TRAIN_IDS` maps the 34 labelIds to 0..18
    (``CITYSCAPES_CLASSES``), everything else to 255. ``ids`` are ``<city>_<seq>_<frame>``.
    """

    CLASSES = CITYSCAPES_CLASSES
    NAME = 'citys'
    DISPLAY_NAME = 'Cityscapes'
    PREPARE_SCRIPT = None  # needs a login: unzip leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip
    SPLITS = tuple(_SPLIT_FOLDERS)

    def __init__(self, root=None, split='train', transform=None):
        super(CitySegmentation, self).__init__(root, split, transform)
        if split not in self.SPLITS:
            raise ValueError('unknown Cityscapes split %r; choose one of %s' % (split, ', '.join(self.SPLITS)))
        self.has_labels = split != 'test'
        self.image_paths, self.mask_paths = [], []
        for folder in _SPLIT_FOLDERS[split]:
            image_dir = self._require(
                os.path.join(self.root, 'leftImg8bit', folder),
                'unzip leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from '
                'https://www.cityscapes-dataset.com into %s' % self.root)
            label_dir = os.path.join(self.root, 'gtFine', folder)
            if self.has_labels:
                self._require(label_dir)
            for city in sorted(os.listdir(image_dir)):
                city_dir = os.path.join(image_dir, city)
                if not os.path.isdir(city_dir):
                    continue
                for name in sorted(os.listdir(city_dir)):
                    if not name.endswith(_IMAGE_SUFFIX):
                        continue
                    self.image_paths.append(os.path.join(city_dir, name))
                    if self.has_labels:
                        stem = name[:-len(_IMAGE_SUFFIX)]
                        self.mask_paths.append(os.path.join(label_dir, city, stem + _LABEL_SUFFIX))
        self.ids = [os.path.basename(p)[:-len(_IMAGE_SUFFIX)] for p in self.image_paths]
        self._check_files(self.mask_paths)

    def _load(self, index):
        image = self._read_image(self.image_paths[index])
        if not self.has_labels:
            return image, None, self.image_paths[index]
        return image, self._read_mask(index), self.mask_paths[index]

    def _read_mask(self, index):
        return cityscapes_train_ids(read_label_png(self.mask_paths[index]))
