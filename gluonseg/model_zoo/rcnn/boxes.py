"""Box utilities shared by the R-CNN parts: corner/centre conversion, clipping, IoU, NMS.

Boxes are ``x1, y1, x2, y2`` in input pixels along the last axis. Widths are ``x2 - x1``
(no "+1"), as in the box coder of the published models. Every function takes ``F``
(``mx.nd`` or ``mx.sym``) first so that it works inside hybridized blocks, except
:func:`iou_matrix`, the NumPy IoU the training target generators use.
"""
import mxnet as mx
import numpy as np

from . import fast_nms

__all__ = ['corner_to_center', 'clip_to_image', 'box_iou', 'iou_matrix', 'nms']


def corner_to_center(F, boxes):
    """``(x1, y1, x2, y2)`` -> ``(cx, cy, w, h)`` (last axis)."""
    x1, y1, x2, y2 = F.split(boxes, axis=-1, num_outputs=4)
    width = x2 - x1
    height = y2 - y1
    return F.concat(x1 + width * 0.5, y1 + height * 0.5, width, height, dim=-1)


def clip_to_image(F, boxes, image):
    """Clip (B, N, 4) boxes to ``[0, W] x [0, H]`` of ``image`` (B, C, H, W)."""
    boxes = F.maximum(boxes, 0.0)
    height_width = F.shape_array(image).slice_axis(axis=0, begin=2, end=None)
    limit = F.tile(F.reverse(height_width, axis=0), reps=(2,))  # (W, H, W, H)
    return F.broadcast_minimum(boxes, F.cast(limit, 'float32').reshape((1, 1, 4)))


def box_iou(F, a, b):
    """Pairwise IoU of (N, 4) and (M, 4) corner boxes, (N, M); areas are ``w * h``."""
    return F.contrib.box_iou(a, b, format='corner')


def iou_matrix(a, b):
    """Pairwise IoU (N, M) float64 of NumPy corner boxes a (N, 4) and b (M, 4); areas are
    ``w * h`` like :func:`box_iou`. Degenerate boxes (no area) have IoU 0 with everything."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(F, detections, overlap_thresh, topk=-1, score_index=0, coord_start=1, id_index=-1,
        valid_thresh=0.0, force_suppress=True, max_out=None):
    """Greedy non-maximum suppression of (B, N, K) rows, ``contrib.box_nms``'s.

    Each batch element is sorted by score (descending); a row is dropped when its IoU with
    a kept, higher-scoring row of the same class (``id_index``; every class together with
    ``force_suppress``) exceeds ``overlap_thresh``. Only the ``topk`` best rows take part
    (-1: all). Rows with score <= ``valid_thresh``, or class -1, are dropped too. Kept rows
    come first; dropped rows are set to -1. Only the first ``max_out`` rows (default: N)
    are returned.

    The one NMS entry of the R-CNN; it chooses the kernel: in a graph (``F`` is
    ``mx.sym``), ``contrib.box_nms``; imperatively, :func:`~.fast_nms.box_nms`, which runs
    the numba kernel on the CPU when it is installed (the same rows, faster) and
    ``contrib.box_nms`` otherwise.
    """
    args = (detections, overlap_thresh, topk, score_index, coord_start, id_index,
            valid_thresh, force_suppress, max_out)
    if F is mx.nd:
        return fast_nms.box_nms(*args)
    return fast_nms.contrib_box_nms(F, *args)
