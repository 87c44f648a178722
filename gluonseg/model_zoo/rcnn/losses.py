"""Mask R-CNN losses and their normalisations (those of the published training recipe).

RPN
    Sigmoid binary cross-entropy of the objectness logits of the sampled anchors, and
    smooth-L1 (``rho`` = 1/9) of the box offsets of the sampled positives; both are summed
    and divided by the number of sampled anchors (positives and negatives).
R-CNN
    Softmax cross-entropy over background + classes of the sampled RoIs, and smooth-L1
    (``rho`` = 1) of the ground-truth class's box offsets of the positive RoIs; both are
    summed and divided by the number of sampled RoIs.
Mask
    Sigmoid binary cross-entropy of the ground-truth class's mask logits of the positive
    RoIs against their (soft) targets, averaged over those pixels.

Smooth-L1 with parameter ``rho`` is ``0.5 * x**2 / rho`` for ``|x| < rho`` and
``|x| - 0.5 * rho`` beyond (Gluon's ``HuberLoss``). The training loss is the sum of the five
terms. Counts are over the whole batch given, so a batch of one image reproduces the
published per-image losses, and a larger batch is their sample-weighted mean.
"""
from collections import OrderedDict

import mxnet as mx

__all__ = ['smooth_l1', 'sigmoid_bce', 'rpn_loss', 'rcnn_loss', 'mask_loss', 'MaskRCNNLoss']


def smooth_l1(F, x, rho):
    """Element-wise smooth-L1 (Huber) of ``x`` with transition point ``rho``."""
    absolute = F.abs(x)
    return F.where(absolute > rho, absolute - 0.5 * rho, (0.5 / rho) * F.square(absolute))


def sigmoid_bce(F, logits, targets):
    """Element-wise binary cross-entropy of ``sigmoid(logits)`` against ``targets`` in [0, 1]
    (computed stably from the logits)."""
    return F.relu(logits) - logits * targets + F.Activation(-F.abs(logits), act_type='softrelu')


def _count(F, mask):
    return F.maximum(F.sum(mask), 1.0)


def rpn_loss(logits, deltas, cls_targets, box_targets, box_masks, rho=1.0 / 9):
    """RPN objectness and box losses.

    Parameters
    ----------
    logits : NDArray (B, N) or (B, N, 1)
        Objectness logits of every anchor.
    deltas : NDArray (B, N, 4)
        Predicted box offsets.
    cls_targets : NDArray (B, N)
        1 positive, 0 negative, -1 not sampled.
    box_targets, box_masks : NDArray (B, N, 4)
        Offsets of the matched boxes, and 1 on the sampled positives' rows.
    rho : float
        Smooth-L1 transition point.

    Returns
    -------
    (NDArray, NDArray)
        Scalar (1,) objectness and box losses.
    """
    F = mx.nd
    logits = logits.reshape(cls_targets.shape)
    sampled = cls_targets >= 0
    count = _count(F, sampled)
    cls = F.sum(sigmoid_bce(F, logits, F.maximum(cls_targets, 0)) * sampled) / count
    box = F.sum(smooth_l1(F, deltas - box_targets, rho) * box_masks) / count
    return cls, box


def rcnn_loss(cls_logits, cls_targets, box_pred, box_targets, rho=1.0):
    """R-CNN classification and box losses.

    Parameters
    ----------
    cls_logits : NDArray (S, C + 1)
        Logits of the sampled RoIs (background first).
    cls_targets : NDArray (S,)
        ``class_id + 1``, 0 for background, -1 for a row to ignore.
    box_pred, box_targets : NDArray (P, 4)
        The ground-truth class's predicted offsets of the positive RoIs, and their targets
        (P may be 0: ``None`` is accepted).
    rho : float
        Smooth-L1 transition point.

    Returns
    -------
    (NDArray, NDArray)
        Scalar (1,) classification and box losses.
    """
    F = mx.nd
    sampled = cls_targets >= 0
    count = _count(F, sampled)
    log_prob = F.log_softmax(cls_logits, axis=-1)
    picked = F.pick(log_prob, F.maximum(cls_targets, 0), axis=-1)
    cls = -F.sum(picked * sampled) / count
    if box_pred is None or box_pred.shape[0] == 0:
        box = F.zeros((1,), ctx=cls_logits.context)
    else:
        box = F.sum(smooth_l1(F, box_pred - box_targets, rho)) / count
    return cls, box


def mask_loss(mask_logits, mask_targets):
    """Mean binary cross-entropy over the pixels of the positive RoIs' masks.

    Parameters
    ----------
    mask_logits, mask_targets : NDArray (P, M, M)
        The ground-truth class's mask logits and the soft targets (``None`` or P = 0 give 0).
    """
    F = mx.nd
    if mask_logits is None or mask_logits.shape[0] == 0:
        ctx = mask_logits.context if mask_logits is not None else mx.cpu()
        return F.zeros((1,), ctx=ctx)
    return F.mean(sigmoid_bce(F, mask_logits, mask_targets)).reshape((1,))


class MaskRCNNLoss(object):
    """The summed training loss of :class:`~.mask_rcnn.MaskRCNN`'s training outputs.

    Parameters
    ----------
    rpn_rho, rcnn_rho : float
        Smooth-L1 transition points of the RPN (1/9) and R-CNN (1) box losses.
    weights : dict, optional
        Multipliers of the terms (``rpn_cls``, ``rpn_box``, ``rcnn_cls``, ``rcnn_box``,
        ``mask``; default 1 each). They scale the gradients too.
    """

    TERMS = ('rpn_cls', 'rpn_box', 'rcnn_cls', 'rcnn_box', 'mask')

    def __init__(self, rpn_rho=1.0 / 9, rcnn_rho=1.0, weights=None):
        self.rpn_rho = float(rpn_rho)
        self.rcnn_rho = float(rcnn_rho)
        self.weights = {term: 1.0 for term in self.TERMS}
        unknown = set(weights or {}) - set(self.TERMS)
        if unknown:
            raise ValueError('Unknown loss terms %s; the terms are %s'
                             % (sorted(unknown), ', '.join(self.TERMS)))
        self.weights.update(weights or {})

    def __call__(self, outputs):
        """``(total, terms)``: the weighted sum (1,) and an ordered dict of the unweighted
        terms (each (1,)).

        Parameters
        ----------
        outputs : MaskRCNNTrainOutput
            What the network returns while training.
        """
        terms = OrderedDict()
        terms['rpn_cls'], terms['rpn_box'] = rpn_loss(
            outputs.rpn_logits, outputs.rpn_deltas, outputs.rpn_cls_targets,
            outputs.rpn_box_targets, outputs.rpn_box_masks, self.rpn_rho)
        terms['rcnn_cls'], terms['rcnn_box'] = rcnn_loss(
            outputs.cls_logits, outputs.cls_targets, outputs.box_pred, outputs.box_targets,
            self.rcnn_rho)
        terms['mask'] = mask_loss(outputs.mask_logits, outputs.mask_targets)
        total = mx.nd.add_n(*[terms[t] * self.weights[t] for t in self.TERMS])
        return total, terms
