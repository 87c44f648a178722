"""Reproducible training data: per-epoch shuffling from (seed, epoch), per-sample augmentation
randomness from (seed, epoch, index), and datasets by name.

Batch ``b`` of epoch ``e`` is a pure function of ``(seed, e, b)``: a resumed run asks for the
batches it has not consumed yet and gets exactly those of the interrupted run, with the same
crops and flips, whatever the number of DataLoader workers.
"""
import copy

import numpy as np
from mxnet import gluon

from ..data.catalog import SEGMENTATION_DATASETS, dataset_info, loader_class

__all__ = ['epoch_permutation', 'EpochBatchSampler', 'SeededTransformDataset',
           'get_segmentation_dataset', 'dataset_short_name']


def epoch_permutation(num_samples, seed, epoch):
    """The sample order of ``epoch``: a permutation drawn from ``(seed, epoch)`` alone."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(num_samples))


class EpochBatchSampler(gluon.data.Sampler):
    """Batches of ``(epoch, index)`` keys for one epoch, starting at batch ``start_batch``.

    The last incomplete batch is dropped, so every epoch has ``num_samples // batch_size``
    batches and every batch the same size.

    Data-parallel workers (processes) share one sample order, the permutation of ``(seed,
    epoch)``: each batch is cut into ``num_parts`` consecutive slices, and worker ``part``
    gets its slice of every batch. With gradient accumulation, the slice is yielded in
    ``micro_batches`` consecutive pieces (the batches of one update).

    Parameters
    ----------
    num_samples, batch_size, seed, epoch : int
        ``batch_size`` counts the images of all the parts (of one update).
    start_batch : int, default 0
        Skip the batches a resumed run has already consumed.
    num_parts, part : int, default 1, 0
        Yield slice ``part`` of ``num_parts`` of each batch.
    micro_batches : int, default 1
        Yield each slice in this many pieces.
    """

    def __init__(self, num_samples, batch_size, seed, epoch, start_batch=0, num_parts=1,
                 part=0, micro_batches=1):
        self.num_batches = num_samples // batch_size
        if self.num_batches < 1:
            raise ValueError('The training set has %d samples, fewer than one batch of %d'
                             % (num_samples, batch_size))
        if not 0 <= start_batch <= self.num_batches:
            raise ValueError('start_batch %d outside [0, %d]' % (start_batch, self.num_batches))
        if batch_size % (num_parts * micro_batches) or not 0 <= part < num_parts:
            raise ValueError('Cannot take part %d of %d equal parts of a batch of %d in %d '
                             'equal pieces' % (part, num_parts, batch_size, micro_batches))
        self.order = epoch_permutation(num_samples, seed, epoch)
        self.batch_size, self.epoch, self.start_batch = batch_size, int(epoch), int(start_batch)
        self.part_size = batch_size // num_parts
        self.part_start = part * self.part_size
        self.micro_batches = micro_batches
        self.piece_size = self.part_size // micro_batches

    def __iter__(self):
        for b in range(self.start_batch, self.num_batches):
            start = b * self.batch_size + self.part_start
            for piece in range(self.micro_batches):
                begin = start + piece * self.piece_size
                yield [(self.epoch, int(i)) for i in self.order[begin:begin + self.piece_size]]

    def __len__(self):
        return (self.num_batches - self.start_batch) * self.micro_batches


class SeededTransformDataset(gluon.data.Dataset):
    """``dataset`` with ``transform`` applied, the transform's randomness drawn from
    ``(seed, epoch, index)``.

    Index it with the ``(epoch, index)`` keys of :class:`EpochBatchSampler` (a plain int means
    epoch 0). A transform with an ``rng`` attribute (like
    :class:`gluonseg.data.SegmentationTrainTransform`) is called through a copy whose ``rng``
    is a ``numpy.random.RandomState`` seeded from the key; any other transform is called as is,
    and its randomness is then not reproduced by a resumed run.

    Parameters
    ----------
    dataset : Dataset
        Returns ``(image, mask)``, or any tuple of fields (e.g. ``(image, boxes, class_ids,
        masks)`` for instance segmentation), with no transform of its own.
    transform : callable or None
        ``transform(*sample)``, e.g. ``transform(image, mask) -> (image, mask)``.
    seed : int
    """

    def __init__(self, dataset, transform, seed):
        self.dataset, self.transform, self.seed = dataset, transform, int(seed)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        sample = self.dataset[index]
        if self.transform is None:
            return sample
        transform = self.transform
        if hasattr(transform, 'rng'):
            transform = copy.copy(transform)
            seeds = np.random.SeedSequence([self.seed, int(epoch), int(index)])
            transform.rng = np.random.RandomState(seeds.generate_state(4))
        return transform(*sample)


def _segmentation_dataset(name):
    """The catalog record of a semantic segmentation dataset name."""
    if name not in SEGMENTATION_DATASETS:
        raise ValueError('Unknown dataset %r; choose one of %s'
                         % (name, ', '.join(sorted(SEGMENTATION_DATASETS))))
    return dataset_info(name)


def dataset_short_name(dataset):
    """The dataset part of model names for ``dataset`` (``'voc_aug'`` -> ``'voc'``)."""
    return _segmentation_dataset(dataset).model_suffix


def get_segmentation_dataset(name, split='train', root=None, transform=None, **kwargs):
    """A segmentation dataset by name.

    Parameters
    ----------
    name : str
        One of :data:`gluonseg.data.catalog.SEGMENTATION_DATASETS`: ``'shapes'``, ``'voc'``,
        ``'voc_aug'``, ``'coco'``, ``'ade'``, ``'citys'``, ``'folder'``.
    split : str
    root : str, optional
        Data folder (ignored by ``'shapes'``, which is generated; required by ``'folder'``,
        a :class:`~gluonseg.data.folder.FolderSegmentation`).
    transform : callable, optional
    **kwargs
        Passed to the dataset class (``'shapes'``: ``size``, ``length``, ``seed``, ...).
    """
    cls = loader_class(_segmentation_dataset(name).name)
    if name == 'shapes':
        return cls(split=split, transform=transform, **kwargs)
    return cls(root=root, split=split, transform=transform, **kwargs)
