"""Shared base of the segmentation datasets: root lookup, missing-data errors, label checks.

Every dataset returns ``(image, mask)`` from ``__getitem__``: ``image`` a uint8 HxWx3 RGB numpy
array, read by :func:`~gluonseg.data.transforms.load_image` (upright: its EXIF orientation
applied; 16-bit greyscale scaled to 8 bits), and ``mask`` an int32 HxW numpy array of class ids
as stored, with :data:`IGNORE_INDEX` (255) for pixels that are not scored. An image and mask of
different sizes are an error naming both files and both sizes. An optional joint
``transform(image, mask) -> (image, mask)`` is applied last. Splits without labels (e.g. VOC
``test``) return the image alone; their transform is called with ``mask=None``.

Datasets that can read a mask without its image (:attr:`SegmentationDataset.can_verify`) check
all their labels at once with :meth:`SegmentationDataset.verify`.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import mxnet as mx
import numpy as np
from tqdm import tqdm

from ..utils.paths import datasets_dir
from .transforms import exif_orientation, image_file_size, load_image, open_image_file

__all__ = ['IGNORE_INDEX', 'DatasetNotFoundError', 'LabelCheckError', 'SegmentationDataset',
           'read_label_png', 'read_split_file', 'check_mask']

IGNORE_INDEX = 255


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder or file is missing; the message says where it was expected and how to create it.

    Parameters
    ----------
    dataset : str
        Human-readable dataset name, e.g. ``'Pascal VOC 2012'``.
    path : str
        The path that was looked for.
    script : str, optional
        Preparation script that creates the data, e.g. ``'scripts/datasets/prepare_voc.py'``.
    detail : str, optional
        Extra explanation (e.g. which other locations were tried).
    """

    def __init__(self, dataset, path, script=None, detail=None):
        msg = '%s not found: expected %s' % (dataset, path)
        if detail:
            msg += ' (%s)' % detail
        if script:
            msg += '. Create it with `python %s`, or pass root= pointing at an existing copy' % script
        super(DatasetNotFoundError, self).__init__(msg)
        self.message = msg
        self.path = path
        self.dataset = dataset
        self.script = script

    def __str__(self):
        return self.message


class LabelCheckError(ValueError):
    """The bad labels of a dataset, all of them, found by :meth:`SegmentationDataset.verify`.

    The message has one line per bad label file, naming the file and its problem.

    Attributes
    ----------
    problems : list of (str, str)
        ``(label file, what is wrong with it)``, in dataset order.
    checked : int
        The number of labels checked.
    """

    def __init__(self, dataset, problems, checked):
        self.problems = list(problems)
        self.checked = checked
        lines = ['%d of the %d labels of %s are bad:' % (len(self.problems), checked, dataset)]
        lines += ['  ' + message for _, message in self.problems]
        super(LabelCheckError, self).__init__('\n'.join(lines))


def read_label_png(path):
    """Read a label PNG as an int32 HxW array of class ids, as stored.

    Palette ('P') PNGs such as VOC's ``SegmentationClass`` give their palette indices (not the
    colours); greyscale ('L', 'I', 'I;16') PNGs give their values. Labels are not turned by an
    EXIF orientation tag (images are, see :func:`~gluonseg.data.transforms.load_image`): a label
    carrying one is refused rather than guessed.

    Raises
    ------
    ValueError
        If the PNG holds colours (RGB/RGBA) rather than class ids, or carries an EXIF
        orientation other than upright.
    ImageReadError
        If the file cannot be decoded (truncated, damaged, not an image).
    """
    with open_image_file(path) as label:
        if label.mode not in ('P', 'L', 'I', 'I;16', 'I;16B', 'I;16L', '1'):
            raise ValueError(
                'label %s has PIL mode %r: it stores colours, not class ids. Save labels as palette (P) or '
                'greyscale (L) PNGs whose pixel values are class ids' % (path, label.mode))
        orientation = exif_orientation(label)
        if orientation != 1:
            raise ValueError(
                'label %s carries EXIF orientation %d: labels are read as stored, never turned, so it is '
                'unclear whether it was drawn on the stored or the turned picture. Save it without EXIF '
                'data, its pixels laid out like its image as image viewers show it' % (path, orientation))
        return np.array(label, dtype=np.int32)


def read_split_file(path):
    """Ids listed one per line in ``path`` (blank lines skipped, surrounding whitespace removed)."""
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def check_mask(mask, num_class, ignore_index, source, image_shape=None, image_source=None):
    """Raise ValueError naming ``source`` if ``mask`` has a value outside ``[0, num_class)`` that is
    not ``ignore_index``, or if its size differs from the image's (``image_shape``, of the file
    ``image_source`` when given: the message then names both files).

    A wrong value here would otherwise surface much later as an mIoU of 0 or NaN.
    """
    if image_shape is not None and tuple(mask.shape[:2]) != tuple(image_shape[:2]):
        if image_source is None:
            raise ValueError('%s: label is %dx%d but the image is %dx%d (HxW)'
                             % (source, mask.shape[0], mask.shape[1], image_shape[0], image_shape[1]))
        raise ValueError('%s: label is %dx%d but its image %s is %dx%d (HxW; images are read upright, '
                         'turned by their EXIF orientation, labels as stored)'
                         % (source, mask.shape[0], mask.shape[1], image_source, image_shape[0],
                            image_shape[1]))
    if mask.size == 0:
        return
    if mask.min() >= 0 and mask.max() < num_class:
        return
    bad = (mask < 0) | (mask >= num_class)
    if ignore_index is not None:
        bad &= mask != ignore_index
    if bad.any():
        values = np.unique(mask[bad])
        raise ValueError(
            '%s: label value(s) %s outside [0, %d) and not the ignore value %s. Labels must hold class ids '
            '0..%d (plus %s for "not scored"); e.g. a 0/255 binary mask needs 255 mapped to 1 for a '
            '2-class problem' % (source, values[:10].tolist(), num_class, ignore_index, num_class - 1,
                                 ignore_index))


class NamedClassesMixin(object):
    """``classes`` and ``num_class`` of a dataset whose class names are its ``CLASSES``."""

    CLASSES = ()

    @property
    def classes(self):
        """Class names, index = class id."""
        return list(self.CLASSES)

    @property
    def num_class(self):
        """Number of classes (the ignore value is not a class)."""
        return len(self.CLASSES)


class SegmentationDataset(NamedClassesMixin, mx.gluon.data.Dataset):
    """Base class: ``(image, mask)`` samples of a semantic segmentation dataset.

    Subclasses set :attr:`CLASSES` (and, for on-disk datasets, :attr:`NAME`, :attr:`DISPLAY_NAME`
    and :attr:`PREPARE_SCRIPT`), fill ``self.ids`` and implement :meth:`_load`.

    Parameters
    ----------
    root : str or None
        Dataset folder; ``None`` means ``gluonseg.utils.paths.datasets_dir(NAME)``, i.e.
        ``$GLUONSEG_HOME/datasets/<NAME>``.
    split : str
        Which part of the dataset.
    transform : callable, optional
        ``transform(image, mask) -> (image, mask)`` applied to every sample (``mask`` is None
        on unlabeled splits).

    Attributes
    ----------
    classes : list of str
    num_class : int
    ignore_index : int
        Mask value of pixels that are not scored (255).
    ids : list
        One identifier per sample (file stem for on-disk datasets).
    """

    CLASSES = ()
    NAME = None
    DISPLAY_NAME = None
    PREPARE_SCRIPT = None
    ignore_index = IGNORE_INDEX

    def __init__(self, root=None, split='train', transform=None):
        super(SegmentationDataset, self).__init__()
        if root is None and self.NAME is not None:
            root = datasets_dir(self.NAME)
        self.root = os.path.expanduser(root) if root is not None else None
        self.split = split
        self.transform = transform
        self.ids = []

    def _not_found(self, path, detail=None):
        return DatasetNotFoundError(self.DISPLAY_NAME or type(self).__name__, path,
                                    self.PREPARE_SCRIPT, detail)

    def _require(self, path, detail=None):
        """``path`` if it exists, else raise :class:`DatasetNotFoundError`."""
        if not os.path.exists(path):
            raise self._not_found(path, detail)
        return path

    def _check_files(self, paths):
        """Raise naming the first missing file among ``paths`` (cheap: one stat per file)."""
        for path in paths:
            if not os.path.isfile(path):
                raise self._not_found(path, 'listed in the %r split' % self.split)

    def __len__(self):
        return len(self.ids)

    def _load(self, index):
        """Return ``(image uint8 HxWx3, mask int32 HxW or None, source description)``."""
        raise NotImplementedError

    def _read_mask(self, index):
        """The mask of sample ``index`` as ``__getitem__`` returns it, read without its image.
        A dataset that implements it (and lists ``mask_paths``) supports :meth:`verify`."""
        raise NotImplementedError

    @property
    def can_verify(self):
        """Whether :meth:`verify` can check this dataset's labels: it reads them from label
        files (``mask_paths``) and implements ``_read_mask``."""
        return (type(self)._read_mask is not SegmentationDataset._read_mask
                and bool(getattr(self, 'mask_paths', None)))

    def verify(self, workers=None, progress=False):
        """Check every label against what ``dataset[i]`` would raise on, and report all the
        bad ones at once: class ids outside ``0 .. num_class-1`` other than ``ignore_index``,
        a size different from its image's, colour (RGB) label PNGs, EXIF-turned labels, and
        unreadable or missing files.

        Labels are read in a thread pool (PIL and numpy release the GIL). Image sizes come
        from the file headers, turned by the EXIF orientation like
        :func:`~gluonseg.data.transforms.load_image` turns the pixels; the images are not
        decoded.

        Parameters
        ----------
        workers : int, optional
            Threads reading labels (default: ``concurrent.futures.ThreadPoolExecutor``'s,
            ``min(32, CPUs + 4)``).
        progress : bool, default False
            Show a tqdm progress bar (on stderr).

        Returns
        -------
        int
            The number of labels checked.

        Raises
        ------
        LabelCheckError
            (a ValueError) listing every bad label file with its problem.
        TypeError
            If the dataset cannot read its labels without its images (:attr:`can_verify`).
        """
        if not self.can_verify:
            raise TypeError('%s cannot check its labels on their own: it lists no label files '
                            '(mask_paths) or does not implement _read_mask'
                            % type(self).__name__)
        if workers is not None and workers < 1:
            raise ValueError('workers must be >= 1, got %r' % (workers,))
        count = len(self.mask_paths)
        with ThreadPoolExecutor(workers) as pool:
            # Leaving map's iterator early (Ctrl-C) cancels the labels not started yet.
            results = pool.map(self._label_problem, range(count))
            if progress:
                results = tqdm(results, total=count, unit='label', dynamic_ncols=True,
                               desc='checking labels (%s %s)' % (
                                   self.DISPLAY_NAME or type(self).__name__,
                                   self.split or 'all images'))
            problems = [(self.mask_paths[i], message) for i, message in enumerate(results)
                        if message is not None]
        if problems:
            raise LabelCheckError(self._describe(), problems, count)
        return count

    def _label_problem(self, index):
        """What is wrong with the label of sample ``index`` (a message naming the file), or
        None when it is fine."""
        mask_path = self.mask_paths[index]
        image_path = self._image_file(index)
        try:
            mask = self._read_mask(index)
            check_mask(mask, self.num_class, self.ignore_index, mask_path,
                       image_file_size(image_path) if image_path else None, image_path)
        except (ValueError, OSError) as err:  # OSError: unreadable or missing files
            message = str(err)
            named = mask_path in message or (image_path is not None and image_path in message)
            return message if named else '%s: %s' % (mask_path, message)
        return None

    def _describe(self):
        """``'<display name> split <split> in <root>'``, for messages."""
        return '%s %s in %s' % (self.DISPLAY_NAME or type(self).__name__,
                                'split %r' % self.split if self.split else '(all images)',
                                self.root)

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError('index %d out of range for %s of length %d' % (index, type(self).__name__, len(self)))
        index = int(index) % len(self)
        image, mask, source = self._load(index)
        if mask is not None:
            check_mask(mask, self.num_class, self.ignore_index, source, image.shape,
                       self._image_file(index))
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image if mask is None else (image, mask)

    @staticmethod
    def _read_image(path):
        return load_image(path)

    def _image_file(self, index):
        """The image file of sample ``index`` (None where the dataset lists no image files)."""
        paths = getattr(self, 'image_paths', None)
        return paths[index] if paths else None

    def __repr__(self):
        return '%s(root=%r, split=%r, len=%d, num_class=%d)' % (
            type(self).__name__, self.root, self.split, len(self), self.num_class)
