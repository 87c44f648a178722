"""``contrib.box_nms``'s output, computed faster on the CPU (needs numba).

MXNet 1.9.1's CPU ``box_nms`` compares every pair among the ``topk`` best rows, one kernel
launch per reference row, slow on the RPN's 6000 candidates per image and on the per-class
NMS of the box head's 80 x 1000 rows. Here the rows taking part
(score above ``valid_thresh``, best first, ties in row order, at most ``topk``) go through
greedy NMS against the rows kept so far, one image (or class row block) per task, split
between threads (the kernel releases the GIL), and stop once ``max_out`` rows are kept when
the caller reads no more. A row is kept exactly when ``box_nms`` keeps it: same order, the
IoU computed in float32 in the same order, the same ``> overlap_thresh`` test (bit-identical
in the tests).

:func:`box_nms` falls back to ``contrib.box_nms`` when numba is not installed
(``pip install gluonseg[fast]``), the rows are not float32 or not on the CPU.
"""

import mxnet as mx
import numpy as np

from ...utils.numba_support import compile_kernel, numba, run_in_threads

__all__ = ['box_nms', 'contrib_box_nms']


def _participants(rows, score_index, id_index, valid_thresh, topk):
    """Indices of the rows NMS considers: score > ``valid_thresh`` and (with ``id_index``
    >= 0) class not -1 (``box_nms``'s background), best first, ties in row order
    (``box_nms`` sorts stably), the first ``topk`` (< 0: all)."""
    scores = rows[:, score_index]
    taking_part = scores > valid_thresh
    if id_index >= 0:
        taking_part &= rows[:, id_index] != np.float32(-1)
    valid = np.nonzero(taking_part)[0]
    negated = -scores[valid]
    if 0 < topk < len(valid):
        # Only the rows scoring at least the topk-th best can take part: sort those alone.
        kth = np.partition(negated, topk - 1)[topk - 1]
        near = np.nonzero(negated <= kth)[0]
        valid, negated = valid[near], negated[near]
    order = valid[np.argsort(negated, kind='mergesort')]
    return order[:topk] if topk > 0 else order


def _greedy_nms(rows, score_index, coord_start, id_index, by_class, valid_thresh, topk,
                thresh, max_out, out):
    """NMS of one block of rows (N, K) into ``out`` (max_out, K), which holds -1; with
    ``by_class``, only rows of the same class (``id_index``) suppress each other."""
    order = _participants(rows, score_index, id_index, valid_thresh, topk)
    zero = np.float32(0)
    count = len(order)
    areas = np.empty(count, np.float32)
    for i in range(count):
        width = rows[order[i], coord_start + 2] - rows[order[i], coord_start]
        height = rows[order[i], coord_start + 3] - rows[order[i], coord_start + 1]
        areas[i] = zero if width < zero or height < zero else width * height
    kept = np.empty(min(count, max_out), np.int64)  # positions in `order`
    num_kept = 0
    for i in range(count):
        if num_kept == max_out:
            break
        row = order[i]
        x1, y1 = rows[row, coord_start], rows[row, coord_start + 1]
        x2, y2 = rows[row, coord_start + 2], rows[row, coord_start + 3]
        suppressed = False
        for j in range(num_kept):
            ref = order[kept[j]]
            if by_class and int(rows[ref, id_index]) != int(rows[row, id_index]):
                continue
            # box_nms's Intersect(ref, row) per axis, then its IoU, in float32
            width = min(rows[ref, coord_start + 2], x2) - max(rows[ref, coord_start], x1)
            height = min(rows[ref, coord_start + 3], y2) - max(rows[ref, coord_start + 1], y1)
            inter = (width if width > zero else zero) * (height if height > zero else zero)
            if inter / (areas[kept[j]] + areas[i] - inter) > thresh:
                suppressed = True
                break
        if not suppressed:
            kept[num_kept] = i
            out[num_kept] = rows[row]
            num_kept += 1


_participants = compile_kernel(_participants)
# The numpy error model: 0 / 0 is NaN (no suppression), as in box_nms's C++.
_greedy_nms = compile_kernel(_greedy_nms, error_model='numpy')


def contrib_box_nms(F, data, overlap_thresh, topk=-1, score_index=0, coord_start=1,
                    id_index=-1, valid_thresh=0.0, force_suppress=True, max_out=None):
    """``F.contrib.box_nms`` (``F``: ``mx.nd`` or ``mx.sym``), its first ``max_out`` rows
    (default: all); the arguments as for :func:`box_nms`."""
    kept = F.contrib.box_nms(data, overlap_thresh=overlap_thresh, topk=topk,
                             valid_thresh=valid_thresh, coord_start=coord_start,
                             score_index=score_index, id_index=id_index,
                             force_suppress=force_suppress)
    return kept if max_out is None else F.slice_axis(kept, axis=1, begin=0, end=max_out)


def box_nms(data, overlap_thresh, topk=-1, score_index=0, coord_start=1, id_index=-1,
            valid_thresh=0.0, force_suppress=True, max_out=None):
    """``mx.nd.contrib.box_nms(data, ...)`` (corner boxes) truncated to its first
    ``max_out`` rows, by the numba kernel when it can run.

    Parameters
    ----------
    data : NDArray (B, N, K)
    overlap_thresh, topk, score_index, coord_start, id_index, valid_thresh, force_suppress :
        As for ``contrib.box_nms`` (rows of class -1 never take part when ``id_index``
        >= 0, as with its default ``background_id``).
    max_out : int, optional
        Rows of the output (default N): the kernel stops once that many are kept.

    Returns
    -------
    NDArray (B, max_out, K) on ``data``'s context: the kept rows best first, then -1 rows.
    """
    batch, num, width = data.shape
    max_out = num if max_out is None else min(max_out, num)
    if (numba is None or data.context.device_type != 'cpu' or data.dtype != np.float32
            or topk == 0):
        return contrib_box_nms(mx.nd, data, overlap_thresh, topk, score_index, coord_start,
                               id_index, valid_thresh, force_suppress,
                               None if max_out == num else max_out)
    rows = data.asnumpy()
    out = np.full((batch, max_out, width), -1, np.float32)
    args = (score_index, coord_start, id_index, id_index >= 0 and not force_suppress,
            np.float32(valid_thresh), min(topk, num) if topk > 0 else -1,
            np.float32(overlap_thresh), max_out)

    def suppress(images):
        for b in images:
            _greedy_nms(rows[b], *args, out[b])
    run_in_threads(suppress, range(batch))
    return mx.nd.array(out, ctx=data.context)
