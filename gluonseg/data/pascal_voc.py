"""Pascal VOC 2012 semantic segmentation (21 classes)."""
import os

from .base import SegmentationDataset, read_label_png, read_split_file
from .classes import VOC_CLASSES  # the one list of the 21 names (index = label value)

__all__ = ['VOC_CLASSES', 'VOC_SPLIT_SIZES', 'VOCSegmentation', 'find_voc2012']

# Images per split in the official release (for checking a download).
VOC_SPLIT_SIZES = {'train': 1464, 'val': 1449, 'trainval': 2913, 'test': 1456}


def find_voc2012(root):
    """The ``VOC2012`` folder under ``root`` (``root/VOCdevkit/VOC2012``, ``root/VOC2012`` or
    ``root`` itself), recognised by its ``JPEGImages`` subfolder; None if absent."""
    for candidate in (os.path.join(root, 'VOCdevkit', 'VOC2012'), os.path.join(root, 'VOC2012'), root):
        if os.path.isdir(os.path.join(candidate, 'JPEGImages')):
            return candidate
    return None


class VOCSegmentation(SegmentationDataset):
    """Pascal VOC 2012 segmentation.

    Expected layout (``root`` may also point at ``VOCdevkit`` or directly at ``VOC2012``)::

        root/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
                               SegmentationClass/<id>.png          (palette PNG, 255 = border)
                               ImageSets/Segmentation/{train,val,trainval,test}.txt

    Parameters
    ----------
    root : str, optional
        Default ``$GLUONSEG_HOME/datasets/voc`` (written by ``scripts/datasets/prepare_voc.py``).
    split : {'train', 'val', 'trainval', 'test'}, default 'train'
        Sizes: train 1464, val 1449, trainval 2913, test 1456 (test images come from the separate
        VOC2012 test tarball and have no labels). ``'train'`` reads ``train.txt``; GluonCV's
        'train' reads ``trainval.txt``, so its models have seen the val images.
    transform : callable, optional
        Joint ``transform(image, mask) -> (image, mask)``; on ``'test'`` it is called with
        ``mask=None``.

    Notes
    -----
    ``dataset[i]`` is ``(image, mask)``: uint8 HxWx3 RGB and int32 HxW, the PNG's palette indices
    (0..20, and 255 on object borders, kept as the ignore label). On ``'test'`` it is the image
    alone; ``dataset.ids[i]`` is the file id (e.g. ``'2008_000006'``) to name the prediction.
    """

    CLASSES = VOC_CLASSES
    NAME = 'voc'
    DISPLAY_NAME = 'Pascal VOC 2012'
    PREPARE_SCRIPT = 'scripts/datasets/prepare_voc.py'
    SPLITS = ('train', 'val', 'trainval', 'test')

    def __init__(self, root=None, split='train', transform=None):
        super(VOCSegmentation, self).__init__(root, split, transform)
        if split not in self.SPLITS:
            raise ValueError('unknown VOC split %r; choose one of %s' % (split, ', '.join(self.SPLITS)))
        if not os.path.isdir(self.root):
            raise self._not_found(os.path.join(self.root, 'VOCdevkit', 'VOC2012'))
        voc_dir = find_voc2012(self.root)
        if voc_dir is None:
            raise self._not_found(os.path.join(self.root, 'VOCdevkit', 'VOC2012', 'JPEGImages'),
                                  'also looked for VOC2012/JPEGImages and JPEGImages directly under root')
        self.voc_dir = voc_dir
        split_file = os.path.join(voc_dir, 'ImageSets', 'Segmentation', split + '.txt')
        self._require(split_file, 'the test split ships in the separate VOC2012 test tarball'
                      if split == 'test' else None)
        self.ids = read_split_file(split_file)
        self.image_paths = [os.path.join(voc_dir, 'JPEGImages', i + '.jpg') for i in self.ids]
        self.has_labels = split != 'test'
        self.mask_paths = [os.path.join(voc_dir, 'SegmentationClass', i + '.png') for i in self.ids] \
            if self.has_labels else []
        self._check_files(self.image_paths + self.mask_paths)

    def _load(self, index):
        image = self._read_image(self.image_paths[index])
        if not self.has_labels:
            return image, None, self.image_paths[index]
        return image, self._read_mask(index), self.mask_paths[index]

    def _read_mask(self, index):
        return read_label_png(self.mask_paths[index])

