"""Test-time detections from the box head's outputs.

1. Softmax over background + classes.
2. Class-specific scores at or below ``score_thresh`` are dropped (class id -1).
3. Each class's boxes are decoded from its own offsets against the proposals.
4. NMS per class (IoU ``nms_thresh``) over all proposals.
5. The ``max_dets`` best rows over all classes are kept; missing rows are -1.
"""
from .box_coder import BoxCoder
from .boxes import nms

__all__ = ['DetectionPostProcessor']


class DetectionPostProcessor(object):
    """Per-class thresholding, box decoding and NMS, then a global top-k (no parameters).

    Parameters
    ----------
    num_classes : int
        Foreground classes (the logits have one more column, background, first).
    max_dets : int
        Rows returned per image.
    score_thresh : float
        A class score must exceed this to be kept.
    nms_thresh : float
        IoU above which a lower-scoring box of the same class is suppressed.
    stds, clip :
        Of the R-CNN :class:`BoxCoder`.
    valid_thresh : float
        Scores at or below it never enter NMS (after ``score_thresh`` it changes nothing
        unless ``score_thresh`` is lower).
    """

    def __init__(self, num_classes, max_dets=1000, score_thresh=0.01, nms_thresh=0.5,
                 stds=(0.1, 0.1, 0.2, 0.2), clip=4.42, valid_thresh=1e-4):
        self.num_classes = num_classes
        self.max_dets = max_dets
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.valid_thresh = valid_thresh
        self.coder = BoxCoder(stds=stds, clip=clip)

    def __call__(self, F, class_logits, box_deltas, proposals):
        """``class_logits`` (B, N, C + 1), ``box_deltas`` (B, N, 4C) and ``proposals``
        (B, N, 4) -> ``ids`` (B, K, 1) float class index or -1, ``scores`` (B, K, 1),
        ``boxes`` (B, K, 4), best first, K = ``max_dets``."""
        classes = self.num_classes
        scores = F.slice_axis(F.softmax(class_logits, axis=-1), axis=-1, begin=1, end=None)
        class_index = F.broadcast_like(F.arange(classes).reshape((1, 1, classes)), scores)
        keep = scores > self.score_thresh
        ids = F.where(keep, class_index, F.ones_like(class_index) * -1)
        scores = F.where(keep, scores, F.zeros_like(scores))
        # (B, N, C) -> (B, C, N, 1); offsets (B, N, 4C) -> (B, C, N, 4)
        ids = ids.transpose((0, 2, 1)).expand_dims(-1)
        scores = scores.transpose((0, 2, 1)).expand_dims(-1)
        deltas = box_deltas.reshape((0, 0, -4, classes, 4)).transpose((0, 2, 1, 3))
        boxes = self.coder.decode(F, deltas, proposals.expand_dims(1))
        rows = F.concat(ids, scores, boxes, dim=-1).reshape((-3, 0, 0))  # (B * C, N, 6)
        rows = nms(F, rows, self.nms_thresh, topk=-1, score_index=1, coord_start=2,
                   id_index=0, valid_thresh=self.valid_thresh, force_suppress=False)
        rows = rows.reshape((-4, -1, classes, -2)).reshape((0, -3, 0))  # (B, C * N, 6)
        best = F.topk(F.slice_axis(rows, axis=-1, begin=1, end=2).reshape((0, -1)), axis=1,
                      k=self.max_dets, ret_typ='indices', is_ascend=False)
        batch_index = F.broadcast_like(F.contrib.arange_like(best, axis=0).reshape((-1, 1)),
                                       best)
        picked = F.gather_nd(rows, F.stack(batch_index, best, axis=0))  # (B, K, 6)
        return (F.slice_axis(picked, axis=-1, begin=0, end=1),
                F.slice_axis(picked, axis=-1, begin=1, end=2),
                F.slice_axis(picked, axis=-1, begin=2, end=None))
