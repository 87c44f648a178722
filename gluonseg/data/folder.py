"""Segmentation data in a plain folder: the format for users' own datasets."""
import os

from .base import IGNORE_INDEX, SegmentationDataset, read_label_png, read_split_file

__all__ = ['FolderSegmentation']

_IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


class FolderSegmentation(SegmentationDataset):
    """Images and label PNGs paired by file name.

    Layout::

        root/images/<stem>.jpg|.jpeg|.png
        root/labels/<stem>.png        class ids as pixel values (greyscale 'L' or palette 'P' PNG)
        root/classes.txt              one class name per line; line i = class id i (0 = first line)
        root/<split>.txt              optional: stems of the split, one per line
                                      (root/splits/<split>.txt also works)

    Label pixels must be class ids ``0 .. num_class-1``, or ``ignore_index`` (255) for pixels
    that should be neither trained on nor scored. A label PNG saved in colour (RGB), or holding
    e.g. 255 for foreground in a 2-class problem, raises a ValueError naming the file and the
    values when the sample is read; otherwise such data trains silently to an mIoU of 0 or NaN.
    :meth:`~gluonseg.data.base.SegmentationDataset.verify` checks all labels (values and sizes)
    at once and lists every bad file; ``train.py`` runs it before training.

    Images are read upright: a photo's EXIF orientation tag is applied (see
    :func:`~gluonseg.data.transforms.load_image`), so labels must be drawn on the picture as
    image viewers show it. Label PNGs are read as stored; a label whose size differs from its
    upright image is an error naming both files and both sizes (a label carrying an EXIF
    orientation tag is refused).

    Parameters
    ----------
    root : str
        The dataset folder.
    split : str, optional
        Name of a split list file; ``None`` takes every image that has a label.
    classes : sequence of str, optional
        Class names; default read from ``root/classes.txt``.
    transform : callable, optional
        Joint ``transform(image, mask) -> (image, mask)``.
    ignore_index : int, default 255
    """

    DISPLAY_NAME = 'Segmentation folder'

    def __init__(self, root, split=None, classes=None, transform=None, ignore_index=IGNORE_INDEX):
        super(FolderSegmentation, self).__init__(root, split, transform)
        self.ignore_index = ignore_index
        image_dir = self._require(os.path.join(self.root, 'images'))
        label_dir = self._require(os.path.join(self.root, 'labels'))
        if classes is None:
            classes = read_split_file(self._require(os.path.join(self.root, 'classes.txt'),
                                                    'or pass classes=[...]'))
        self.CLASSES = tuple(classes)
        if len(self.CLASSES) < 1:
            raise ValueError('no classes given (classes.txt in %s is empty)' % self.root)
        if ignore_index is not None and 0 <= ignore_index < len(self.CLASSES):
            raise ValueError('ignore_index %d is also a class id (%d classes)' % (ignore_index, len(self.CLASSES)))

        images = {}
        for name in sorted(os.listdir(image_dir)):
            stem, ext = os.path.splitext(name)
            if ext.lower() in _IMAGE_EXTENSIONS:
                if stem in images:
                    raise ValueError('two images share the stem %r in %s: %s and %s'
                                     % (stem, image_dir, os.path.basename(images[stem]), name))
                images[stem] = os.path.join(image_dir, name)
        labels = {os.path.splitext(n)[0]: os.path.join(label_dir, n)
                  for n in sorted(os.listdir(label_dir)) if n.lower().endswith('.png')}
        if split is None:
            stems = sorted(images)
            unlabeled = [s for s in stems if s not in labels]
            if unlabeled:
                raise ValueError('%d image(s) in %s have no label %s/<stem>.png, e.g. %s'
                                 % (len(unlabeled), image_dir, label_dir, ', '.join(unlabeled[:5])))
        else:
            split_file = os.path.join(self.root, split + '.txt')
            if not os.path.isfile(split_file):
                split_file = os.path.join(self.root, 'splits', split + '.txt')
            stems = read_split_file(self._require(split_file, 'split list for %r; also tried %s'
                                                  % (split, os.path.join(self.root, split + '.txt'))))
            for stem in stems:
                if stem not in images:
                    raise self._not_found(os.path.join(image_dir, stem + '.jpg|.jpeg|.png'),
                                          'listed in %s' % split_file)
                if stem not in labels:
                    raise self._not_found(os.path.join(label_dir, stem + '.png'), 'listed in %s' % split_file)
        if not stems:
            raise ValueError('no images found in %s (extensions %s)' % (image_dir, ', '.join(_IMAGE_EXTENSIONS)))
        self.ids = stems
        self.image_paths = [images[s] for s in stems]
        self.mask_paths = [labels[s] for s in stems]

    def _load(self, index):
        return self._read_image(self.image_paths[index]), self._read_mask(index), \
            self.mask_paths[index]

    def _read_mask(self, index):
        return read_label_png(self.mask_paths[index])
