"""RPN training targets: which anchors are objects, background or ignored, and the offsets
of the object boxes from their anchors.

For one image:

1. Anchors not entirely inside the image (``allowed_border`` pixels of slack:
   ``x1 >= -b``, ``y1 >= -b``, ``x2 < W + b``, ``y2 < H + b``) are ignored.
2. Every other anchor gets its IoU with every ground-truth box.
3. Positive: IoU >= ``pos_iou_thresh`` with some box, or the highest IoU any anchor has with
   a box (ties included, if that IoU is above zero), so that every box gets an anchor even
   when none reaches the threshold. Negative: below ``neg_iou_thresh`` with every box and
   not positive. Everything else is ignored.
4. At most ``num_sample * pos_fraction`` positives are kept (a random subset); a random
   subset of the negatives fills the rest of ``num_sample``; the others are ignored.
5. The kept positives get box targets: the offsets of their best-matching box from the
   anchor (RPN coder, stds 1); ``box_masks`` marks them.

The published models sample 256 anchors per image, half positive at most, with IoU
thresholds 0.7 / 0.3 and no border slack.
"""
import mxnet as mx
import numpy as np

from .box_coder import BoxCoder
from .boxes import iou_matrix

__all__ = ['RPNTargetGenerator', 'inside_image']


def inside_image(anchors, image_size, allowed_border=0):
    """(N,) bool: anchors (N, 4) lying inside an ``(H, W)`` image, with ``allowed_border``
    pixels of slack on every side."""
    height, width = image_size
    b = allowed_border
    return ((anchors[:, 0] >= -b) & (anchors[:, 1] >= -b) &
            (anchors[:, 2] < width + b) & (anchors[:, 3] < height + b))


class RPNTargetGenerator(object):
    """Objectness labels and box targets of the anchors of one image (NumPy, no gradient).

    Parameters
    ----------
    num_sample : int
        Anchors per image that take part in the loss.
    pos_iou_thresh, neg_iou_thresh : float
        IoU at or above which an anchor is positive; below which it is negative.
    pos_fraction : float
        Largest share of positives among the sampled anchors.
    allowed_border : float
        Slack in pixels for anchors crossing the image border (0: fully inside only).
    stds : 4 floats
        Of the RPN :class:`BoxCoder`.
    """

    def __init__(self, num_sample=256, pos_iou_thresh=0.7, neg_iou_thresh=0.3,
                 pos_fraction=0.5, allowed_border=0, stds=(1.0, 1.0, 1.0, 1.0)):
        if not 0 <= neg_iou_thresh <= pos_iou_thresh <= 1:
            raise ValueError('RPN IoU thresholds must satisfy 0 <= neg (%g) <= pos (%g) <= 1'
                             % (neg_iou_thresh, pos_iou_thresh))
        self.num_sample = int(num_sample)
        self.pos_iou_thresh = float(pos_iou_thresh)
        self.neg_iou_thresh = float(neg_iou_thresh)
        self.pos_fraction = float(pos_fraction)
        self.allowed_border = allowed_border
        self.coder = BoxCoder(stds=stds)

    def __repr__(self):
        return ('RPNTargetGenerator(num_sample=%d, pos_iou_thresh=%g, neg_iou_thresh=%g, '
                'pos_fraction=%g, allowed_border=%g)'
                % (self.num_sample, self.pos_iou_thresh, self.neg_iou_thresh,
                   self.pos_fraction, self.allowed_border))

    def labels(self, anchors, gt_boxes, image_size):
        """Labels before sampling, (N,) int8: 1 positive, 0 negative, -1 ignored; and the
        index (N,) of each anchor's best box (0 when there is no box).

        Parameters
        ----------
        anchors : numpy.ndarray (N, 4)
        gt_boxes : numpy.ndarray (G, 4)
            The image's boxes (no padding rows).
        image_size : (int, int)
            ``(H, W)`` of the network input.
        """
        anchors = np.asarray(anchors, dtype=np.float64)
        labels = np.full(len(anchors), -1, dtype=np.int8)
        matches = np.zeros(len(anchors), dtype=np.int64)
        inside = inside_image(anchors, image_size, self.allowed_border)
        if not len(gt_boxes):
            labels[inside] = 0
            return labels, matches
        iou = iou_matrix(anchors, gt_boxes)
        iou[~inside] = -1.0  # never matched, never the best anchor of a box
        matches = iou.argmax(axis=1)
        best_per_anchor = iou[np.arange(len(anchors)), matches]
        labels[inside & (best_per_anchor < self.neg_iou_thresh)] = 0
        best_per_box = iou.max(axis=0)
        is_best = (iou == best_per_box[None, :]) & (best_per_box[None, :] > 0)
        labels[is_best.any(axis=1)] = 1
        labels[best_per_anchor >= self.pos_iou_thresh] = 1
        return labels, matches

    def sample(self, labels, rng=np.random):
        """Keep a random subset of the positives and negatives of ``labels`` (in place
        copy): at most ``num_sample * pos_fraction`` positives, negatives up to
        ``num_sample`` in all; the others become -1."""
        labels = labels.copy()
        positives = np.flatnonzero(labels == 1)
        max_pos = int(self.num_sample * self.pos_fraction)
        if len(positives) > max_pos:
            labels[rng.choice(positives, len(positives) - max_pos, replace=False)] = -1
        num_neg = self.num_sample - int((labels == 1).sum())
        negatives = np.flatnonzero(labels == 0)
        if len(negatives) > num_neg:
            labels[rng.choice(negatives, len(negatives) - num_neg, replace=False)] = -1
        return labels

    def __call__(self, anchors, gt_boxes, image_size, rng=np.random):
        """Sampled targets of one image.

        Parameters
        ----------
        anchors : numpy.ndarray (N, 4)
        gt_boxes : numpy.ndarray (G, 4)
            The image's boxes (no padding rows; G may be 0).
        image_size : (int, int)
            ``(H, W)`` of the network input.
        rng : numpy.random.RandomState or module
            Source of the sampling (default: NumPy's global generator, which the training
            loop's checkpoints restore).

        Returns
        -------
        cls_targets : numpy.ndarray (N,) float32
            1 positive, 0 negative, -1 not sampled.
        box_targets : numpy.ndarray (N, 4) float32
            Offsets of the matched box for sampled positives, 0 elsewhere.
        box_masks : numpy.ndarray (N, 4) float32
            1 on the rows of sampled positives.
        """
        anchors = np.asarray(anchors, dtype=np.float32).reshape(-1, 4)
        gt_boxes = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
        labels, matches = self.labels(anchors, gt_boxes, image_size)
        labels = self.sample(labels, rng)
        box_targets = np.zeros((len(anchors), 4), dtype=np.float32)
        box_masks = np.zeros((len(anchors), 4), dtype=np.float32)
        positives = np.flatnonzero(labels == 1)
        if len(positives):
            box_targets[positives] = self.coder.encode(
                mx.nd, mx.nd.array(gt_boxes[matches[positives]]),
                mx.nd.array(anchors[positives])).asnumpy()
            box_masks[positives] = 1.0
        return labels.astype(np.float32), box_targets, box_masks
