"""ADE20K scene parsing (the 150-class ADEChallengeData2016 release)."""
import os

import numpy as np

from .base import IGNORE_INDEX, SegmentationDataset, read_label_png
from .classes import ADE20K_CLASSES

__all__ = ['ADE20KSegmentation', 'ade20k_target']

_FOLDERS = {'train': ('training',), 'val': ('validation',), 'trainval': ('training', 'validation')}


def ade20k_target(label):
    """Class ids from an ADE20K annotation: value v in 1..150 is class v - 1; 0 ("other") -> 255."""
    label = np.asarray(label, dtype=np.int32)
    return np.where(label == 0, IGNORE_INDEX, label - 1).astype(np.int32)


class ADE20KSegmentation(SegmentationDataset):
    """ADE20K SceneParsing: 150 classes, 20,210 training and 2,000 validation images.

    Layout (``root`` may also be the ``ADEChallengeData2016`` folder itself)::

        root/ADEChallengeData2016/images/{training,validation}/ADE_*_<n>.jpg
        root/ADEChallengeData2016/annotations/{training,validation}/ADE_*_<n>.png

    Parameters
    ----------
    root : str, optional
        Default ``$GLUONSEG_HOME/datasets/ade``.
    split : {'train', 'val', 'trainval'}, default 'train'
        ``'train'`` reads ``training/``, ``'val'`` ``validation/``, ``'trainval'`` both.
    transform : callable, optional
        Joint ``transform(image, mask) -> (image, mask)``.

    Notes
    -----
    The annotation PNGs hold 0 ("other", not scored) and 1..150; masks here are ``value - 1``
    with 0 mapped to the ignore label 255, so class ``c`` is ``ADE20K_CLASSES[c]``. Files for the
    official benchmark server need the value back: write ``prediction + 1``.
    """

    CLASSES = ADE20K_CLASSES
    NAME = 'ade'
    DISPLAY_NAME = 'ADE20K (ADEChallengeData2016)'
    PREPARE_SCRIPT = None  # no script yet: unzip ADEChallengeData2016.zip into root
    SPLITS = tuple(_FOLDERS)

    def __init__(self, root=None, split='train', transform=None):
        super(ADE20KSegmentation, self).__init__(root, split, transform)
        if split not in self.SPLITS:
            raise ValueError('unknown ADE20K split %r; choose one of %s' % (split, ', '.join(self.SPLITS)))
        base = os.path.join(self.root, 'ADEChallengeData2016')
        if not os.path.isdir(base) and os.path.isdir(os.path.join(self.root, 'images')):
            base = self.root
        self.base_dir = base
        self.image_paths, self.mask_paths = [], []
        for folder in _FOLDERS[split]:
            image_dir = self._require(os.path.join(base, 'images', folder),
                                      'unzip ADEChallengeData2016.zip (http://data.csail.mit.edu/places/'
                                      'ADEchallenge/ADEChallengeData2016.zip) into %s' % self.root)
            mask_dir = self._require(os.path.join(base, 'annotations', folder))
            for name in sorted(os.listdir(image_dir)):
                stem, ext = os.path.splitext(name)
                if ext.lower() != '.jpg':
                    continue
                self.image_paths.append(os.path.join(image_dir, name))
                self.mask_paths.append(os.path.join(mask_dir, stem + '.png'))
        self.ids = [os.path.splitext(os.path.basename(p))[0] for p in self.image_paths]
        self._check_files(self.mask_paths)

    def _load(self, index):
        mask_path = self.mask_paths[index]
        return self._read_image(self.image_paths[index]), self._read_mask(index), mask_path

    def _read_mask(self, index):
        return ade20k_target(read_label_png(self.mask_paths[index]))
