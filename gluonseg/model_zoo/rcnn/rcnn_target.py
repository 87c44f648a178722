"""R-CNN training samples: which proposals the box and mask heads learn from, with their
class and box targets.

For one image:

1. The ground-truth boxes are appended to the valid proposals, so that every box has at
   least one perfectly placed RoI (and the heads see positives from the first iteration).
2. Each RoI is matched to the box it overlaps most. Positive: IoU >= ``pos_iou_thresh``;
   every other RoI is background.
3. At most ``round(num_sample * pos_ratio)`` positives are kept (a random subset); a random
   subset of the background fills the rest of ``num_sample``.
4. Positives get the class of their box (``class_id + 1``; 0 is background) and the offsets
   of their box from the RoI (R-CNN coder, stds (0.1, 0.1, 0.2, 0.2)).

The published models sample 512 RoIs per image (FPN), 128 (C4 ResNet-50/101) or 256 (C4
ResNet-18), a quarter positive at most.
"""
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from .box_coder import BoxCoder
from .boxes import iou_matrix

__all__ = ['RCNNSamples', 'RCNNTargetSampler']


@dataclass
class RCNNSamples:
    """The sampled RoIs of one image, positives first.

    Attributes
    ----------
    rois : numpy.ndarray (S, 4) float32
    labels : numpy.ndarray (S,) int64
        ``class_id + 1`` for positives, 0 for background.
    matches : numpy.ndarray (S,) int64
        Index of the matched ground-truth box (of the positives; -1 for background).
    num_pos : int
        The first ``num_pos`` rows are positives.
    box_targets : numpy.ndarray (num_pos, 4) float32
        Offsets of the matched boxes from the positive RoIs.
    """
    rois: np.ndarray
    labels: np.ndarray
    matches: np.ndarray
    num_pos: int
    box_targets: np.ndarray

    def __len__(self):
        return len(self.rois)


class RCNNTargetSampler(object):
    """Sample RoIs of one image among its proposals and ground-truth boxes (NumPy).

    Parameters
    ----------
    num_sample : int
        RoIs per image (fewer only when the image has fewer valid proposals).
    pos_iou_thresh : float
        IoU with a box at or above which a RoI is positive.
    pos_ratio : float
        Largest share of positives.
    stds : 4 floats
        Of the R-CNN :class:`BoxCoder`.
    """

    def __init__(self, num_sample=512, pos_iou_thresh=0.5, pos_ratio=0.25,
                 stds=(0.1, 0.1, 0.2, 0.2)):
        self.num_sample = int(num_sample)
        self.pos_iou_thresh = float(pos_iou_thresh)
        self.pos_ratio = float(pos_ratio)
        self.coder = BoxCoder(stds=stds)

    def __repr__(self):
        return 'RCNNTargetSampler(num_sample=%d, pos_iou_thresh=%g, pos_ratio=%g)' % (
            self.num_sample, self.pos_iou_thresh, self.pos_ratio)

    @property
    def max_pos(self):
        """Largest number of positives per image."""
        return int(round(self.num_sample * self.pos_ratio))

    def __call__(self, proposals, gt_boxes, gt_ids, rng=np.random):
        """Sample one image.

        Parameters
        ----------
        proposals : numpy.ndarray (N, 4)
            Valid proposals only (the RPN's padding rows removed).
        gt_boxes : numpy.ndarray (G, 4)
            The image's boxes (no padding rows; G may be 0).
        gt_ids : numpy.ndarray (G,)
            Their class ids, 0-based.
        rng : numpy.random.RandomState or module
            Source of the sampling (default NumPy's global generator).

        Returns
        -------
        RCNNSamples
        """
        gt_boxes = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
        gt_ids = np.asarray(gt_ids, dtype=np.int64).reshape(-1)
        if len(gt_ids) != len(gt_boxes):
            raise ValueError('RCNNTargetSampler: %d boxes but %d class ids'
                             % (len(gt_boxes), len(gt_ids)))
        rois = np.concatenate([np.asarray(proposals, dtype=np.float32).reshape(-1, 4),
                               gt_boxes])
        if len(gt_boxes):
            iou = iou_matrix(rois, gt_boxes)
            matches = iou.argmax(axis=1)
            best = iou[np.arange(len(rois)), matches]
        else:
            matches = np.zeros(len(rois), dtype=np.int64)
            best = np.zeros(len(rois))
        positives = np.flatnonzero(best >= self.pos_iou_thresh)
        negatives = np.flatnonzero(best < self.pos_iou_thresh)
        if len(positives) > self.max_pos:
            positives = rng.choice(positives, self.max_pos, replace=False)
        num_neg = self.num_sample - len(positives)
        if len(negatives) > num_neg:
            negatives = rng.choice(negatives, num_neg, replace=False)
        keep = np.concatenate([positives, negatives]).astype(np.int64)
        num_pos = len(positives)
        labels = np.zeros(len(keep), dtype=np.int64)
        labels[:num_pos] = gt_ids[matches[positives]] + 1
        kept_matches = np.full(len(keep), -1, dtype=np.int64)
        kept_matches[:num_pos] = matches[positives]
        box_targets = np.zeros((num_pos, 4), dtype=np.float32)
        if num_pos:
            box_targets = self.coder.encode(
                mx.nd, mx.nd.array(gt_boxes[matches[positives]]),
                mx.nd.array(rois[positives])).asnumpy()
        return RCNNSamples(rois[keep], labels, kept_matches, num_pos, box_targets)
