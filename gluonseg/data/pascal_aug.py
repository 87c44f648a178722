"""Pascal VOC "augmented" segmentation: the SBD annotations (Hariharan et al.) plus VOC 2012."""
import os

import numpy as np
import scipy.io

from .base import DatasetNotFoundError, SegmentationDataset, read_label_png, read_split_file
from .pascal_voc import VOC_CLASSES, find_voc2012

__all__ = ['VOCAugSegmentation', 'read_sbd_mat']


def read_sbd_mat(path):
    """The class mask of an SBD ``cls/<id>.mat`` file (field ``GTcls.Segmentation``) as int32 HxW."""
    mat = scipy.io.loadmat(path, mat_dtype=True, squeeze_me=True, struct_as_record=False)
    if 'GTcls' not in mat:
        raise KeyError('%s has no variable GTcls (found: %s); is it an SBD cls/ file?'
                       % (path, ', '.join(k for k in mat if not k.startswith('__'))))
    gt = mat['GTcls']
    if not hasattr(gt, 'Segmentation'):
        raise KeyError('%s: GTcls has no field Segmentation (fields: %s)'
                       % (path, ', '.join(getattr(gt, '_fieldnames', []) or [])))
    return np.asarray(gt.Segmentation).astype(np.int32)


class VOCAugSegmentation(SegmentationDataset):
    """Pascal VOC 2012 classes with the extra SBD annotations ("VOC Aug").

    Expected layout (``root`` may also point at ``benchmark_RELEASE`` or at its ``dataset``)::

        root/benchmark_RELEASE/dataset/img/<id>.jpg
                                       cls/<id>.mat     (GTcls.Segmentation: HxW class ids)
                                       train.txt, val.txt
        root/VOCdevkit/VOC2012/...                      (only for split 'train_aug'; see voc_root)

    Parameters
    ----------
    root : str, optional
        Default ``$GLUONSEG_HOME/datasets/voc``, shared with :class:`VOCSegmentation` so that
        SBD (``scripts/datasets/prepare_sbd.py``) and VOC 2012 sit side by side.
    split : {'train_aug', 'train', 'val', 'gluoncv_train'}, default 'train_aug'
        - ``'train_aug'`` (10,582 images): SBD train + SBD val + VOC2012 train, minus every VOC2012
          val image. This is the usual training set for VOC; it never touches VOC2012 val, so
          :class:`VOCSegmentation` ``'val'`` stays a clean validation set. Images in SBD use the
          SBD mask, the others (VOC2012 train images missing from SBD) VOC's
          ``SegmentationClass`` PNG (with its 255 borders).
        - ``'train'`` (8,498) and ``'val'`` (2,857): SBD's own splits.
        - ``'gluoncv_train'`` (11,355): SBD train + val, the set GluonCV trains its VOC-aug models
          on. It overlaps VOC2012 *val* (SBD re-annotated VOC2011 images from both VOC splits), so an
          mIoU measured on VOC2012 val after training on it is inflated; use it only to reproduce GluonCV's recipe, and judge
          such models on the VOC test server.
    transform : callable, optional
        Joint ``transform(image, mask) -> (image, mask)``.
    voc_root : str, optional
        VOC 2012 location for ``'train_aug'`` (same forms as :class:`VOCSegmentation`'s root).
        Default: looked for next to the SBD folder (``root/VOCdevkit/VOC2012`` and the parents
        of ``benchmark_RELEASE``).

    Notes
    -----
    ``dataset[i]`` is ``(image, mask)``: uint8 HxWx3 RGB and int32 HxW class ids 0..20 (SBD masks
    have no 255 border; VOC masks do). The sizes above are those of the official releases.
    """

    CLASSES = VOC_CLASSES
    NAME = 'voc'
    DISPLAY_NAME = 'SBD (benchmark_RELEASE)'
    PREPARE_SCRIPT = 'scripts/datasets/prepare_sbd.py'
    SPLITS = ('train_aug', 'train', 'val', 'gluoncv_train')

    def __init__(self, root=None, split='train_aug', transform=None, voc_root=None):
        super(VOCAugSegmentation, self).__init__(root, split, transform)
        if split not in self.SPLITS:
            raise ValueError('unknown VOC Aug split %r; choose one of %s' % (split, ', '.join(self.SPLITS)))
        self.sbd_dir = self._find_sbd()
        sbd = {name: read_split_file(self._require(os.path.join(self.sbd_dir, name + '.txt')))
               for name in ('train', 'val')}
        if split in ('train', 'val'):
            self.ids = sbd[split]
        else:
            self.ids = _unique(sbd['train'] + sbd['val'])
        self.voc_dir = None
        in_sbd = set(sbd['train']) | set(sbd['val'])
        if split == 'train_aug':
            self.voc_dir = self._find_voc(voc_root)
            segmentation_sets = os.path.join(self.voc_dir, 'ImageSets', 'Segmentation')
            voc_train = read_split_file(self._require(os.path.join(segmentation_sets, 'train.txt')))
            voc_val = set(read_split_file(self._require(os.path.join(segmentation_sets, 'val.txt'))))
            self.ids = sorted(set(self.ids + voc_train) - voc_val)
        self.image_paths, self.mask_paths = [], []
        for image_id in self.ids:
            if image_id in in_sbd:
                self.image_paths.append(os.path.join(self.sbd_dir, 'img', image_id + '.jpg'))
                self.mask_paths.append(os.path.join(self.sbd_dir, 'cls', image_id + '.mat'))
            else:
                self.image_paths.append(os.path.join(self.voc_dir, 'JPEGImages', image_id + '.jpg'))
                self.mask_paths.append(os.path.join(self.voc_dir, 'SegmentationClass', image_id + '.png'))
        self._check_files(self.image_paths + self.mask_paths)

    def _find_sbd(self):
        root = self.root
        candidates = [os.path.join(root, 'benchmark_RELEASE', 'dataset'), os.path.join(root, 'VOCaug', 'dataset'),
                      os.path.join(root, 'dataset'), root]
        for candidate in candidates:
            if os.path.isdir(os.path.join(candidate, 'cls')) and os.path.isdir(os.path.join(candidate, 'img')):
                return candidate
        raise self._not_found(os.path.join(root, 'benchmark_RELEASE', 'dataset', 'cls'),
                              'also looked for dataset/, VOCaug/dataset/ and cls/ directly under root')

    def _find_voc(self, voc_root):
        if voc_root is not None:
            found = find_voc2012(os.path.expanduser(voc_root))
            if found is None:
                raise self._voc_missing(os.path.join(os.path.expanduser(voc_root), 'VOCdevkit', 'VOC2012'))
            return found
        # SBD's dataset/ folder, benchmark_RELEASE/, and the folder holding benchmark_RELEASE/.
        places = [self.root]
        parent = self.sbd_dir
        for _ in range(3):
            parent = os.path.dirname(os.path.abspath(parent))
            places.append(parent)
        for place in places:
            found = find_voc2012(place)
            if found is not None:
                return found
        raise self._voc_missing(os.path.join(self.root, 'VOCdevkit', 'VOC2012'))

    def _voc_missing(self, path):
        return DatasetNotFoundError(
            'Pascal VOC 2012 (needed by split train_aug)', os.path.join(path, 'JPEGImages'),
            'scripts/datasets/prepare_voc.py', 'pass voc_root= if it lives elsewhere')

    def _load(self, index):
        image = self._read_image(self.image_paths[index])
        return image, self._read_mask(index), self.mask_paths[index]

    def _read_mask(self, index):
        mask_path = self.mask_paths[index]
        return read_sbd_mat(mask_path) if mask_path.endswith('.mat') else read_label_png(mask_path)


def _unique(ids):
    """ids without repeats, first occurrence order."""
    seen = set()
    return [i for i in ids if not (i in seen or seen.add(i))]
