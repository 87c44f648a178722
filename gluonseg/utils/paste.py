"""Pasting M x M box masks into full-size image masks, with sub-pixel accuracy.

The predicted mask of a box covers the box with M x M cells. It is padded with one cell of
zeros on every side and the box is enlarged by (M + 2) / M around its centre to match, so
the mask fades to zero across the box border. The padded mask is read as a continuous
function, bilinear between its cell centres and zero outside them, and sampled at the
centre of every image pixel; pixels where it reaches ``threshold`` are in the mask.

This is the "accurate" paste GluonCV's COCO evaluation used (its ``fill(fast_fill=False)``),
computed here without SciPy (whose ``interp2d`` it relied on is gone since SciPy 1.14):
sampling on a pixel grid is separable, so each mask is interpolated along its rows, then
along its columns, restricted to the rows and columns the box touches. With an all-ones
mask the result is exactly the set of pixels whose centre lies inside the box.

Each axis is two row gathers and a weighted sum in float32 (the masks' precision), not a
product with a sparse weight matrix: NumPy hands such products to its multi-threaded
BLAS, which stalls when the cores are busy (``scripts/benchmark/paste.py --busy`` times
both situations).

:func:`paste_detections` takes one image's Mask R-CNN outputs (``net.detect``'s or an ONNX
export's, at the network input's size) to its kept detections in the image's own pixels, with
full-size masks: what ``net.predict`` returns.

It lives in :mod:`gluonseg.utils` and imports NumPy only because the COCO metric
(:mod:`~gluonseg.utils.coco_metric`), Mask R-CNN's predictions and the MXNet-free ONNX
deploy script (``scripts/deploy/onnx_predict.py``) all paste masks.
"""
import numpy as np

__all__ = ['paste_masks', 'paste_detections', 'interpolate_rows']


def interpolate_rows(signal, coords):
    """``signal`` (n, m) read along its rows at ``coords`` (in row-index units, row k
    centred at k) by linear interpolation, zero outside ``[0, n - 1]``: (len(coords), m)
    float32."""
    size = signal.shape[0]
    coords = np.asarray(coords, dtype=np.float64)
    inside = (coords >= 0) & (coords <= size - 1)
    left = np.clip(np.floor(coords), 0, size - 2).astype(np.int64)
    right_weight = np.where(inside, coords - left, 0.0).astype(np.float32)[:, None]
    left_weight = np.where(inside, 1.0 - (coords - left), 0.0).astype(np.float32)[:, None]
    signal = np.asarray(signal, dtype=np.float32)
    return signal[left] * left_weight + signal[left + 1] * right_weight


def paste_masks(masks, boxes, image_size, threshold=0.5):
    """Full-size binary masks (K, H, W) from box masks and boxes.

    Parameters
    ----------
    masks : array_like (K, M, M)
        Mask probabilities inside each box (the network's ``masks`` output).
    boxes : array_like (K, 4)
        ``x1, y1, x2, y2`` in the pixel frame of the target image (pixel (i, j) spans
        ``[j, j + 1) x [i, i + 1)``).
    image_size : (int, int)
        ``(H, W)`` of the target image.
    threshold : float
        Minimum interpolated probability of a mask pixel.

    Returns
    -------
    numpy.ndarray
        bool, (K, H, W).
    """
    masks = np.asarray(masks, dtype=np.float32)
    boxes = np.asarray(boxes, dtype=np.float64)
    if masks.ndim != 3 or masks.shape[1] != masks.shape[2]:
        raise ValueError('paste_masks expects (K, M, M) masks, got shape %s' % (masks.shape,))
    if boxes.shape != (len(masks), 4):
        raise ValueError('paste_masks expects (%d, 4) boxes for %d masks, got shape %s'
                         % (len(masks), len(masks), boxes.shape))
    height, width = int(image_size[0]), int(image_size[1])
    side = masks.shape[1]
    padded = np.zeros((len(masks), side + 2, side + 2), dtype=np.float32)
    padded[:, 1:-1, 1:-1] = masks
    scale = (side + 2.0) / side
    out = np.zeros((len(masks), height, width), dtype=bool)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        if not (np.isfinite([x1, y1, x2, y2]).all() and x2 > x1 and y2 > y1):
            continue  # an empty or invalid box covers no pixel centre
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        half_w, half_h = (x2 - x1) / 2 * scale, (y2 - y1) / 2 * scale
        ex1, ey1, ex2, ey2 = cx - half_w, cy - half_h, cx + half_w, cy + half_h
        cols = np.arange(max(0, int(np.floor(ex1))), min(width, int(np.ceil(ex2)) + 1))
        rows = np.arange(max(0, int(np.floor(ey1))), min(height, int(np.ceil(ey2)) + 1))
        if not len(cols) or not len(rows):
            continue
        # pixel centre -> padded-mask cell index (cell k centred at k)
        u = (cols + 0.5 - ex1) / (ex2 - ex1) * (side + 2) - 0.5
        v = (rows + 0.5 - ey1) / (ey2 - ey1) * (side + 2) - 0.5
        # rows, then columns (as the rows of the transpose: contiguous gathers)
        along_rows = interpolate_rows(padded[k], v)
        values = interpolate_rows(np.ascontiguousarray(along_rows.T), u)
        out[k, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = (values >= threshold).T
    return out


def paste_detections(ids, scores, boxes, masks, image_size, scales=(1.0, 1.0),
                     score_thresh=0.5, max_dets=100, mask_thresh=0.5):
    """One image's kept detections in its own pixels, masks pasted at full size.

    Parameters
    ----------
    ids, scores : array_like (K, 1) or (K,)
        Class index (float, -1 for an empty row) and score of each row, best first.
    boxes : array_like (K, 4)
        ``x1, y1, x2, y2`` in the pixels of the network's (resized) input.
    masks : array_like (K, M, M)
        Mask probabilities of each row's class inside its box.
    image_size : (int, int)
        ``(H, W)`` of the original image.
    scales : (float, float)
        ``(scale_y, scale_x)``: network input size / original size per axis (what
        :func:`~gluonseg.data.instance_transforms.resize_short_within` returns).
    score_thresh : float
        Keep rows with a class and a score of at least this.
    max_dets : int
        Keep at most this many rows (the first ones).
    mask_thresh : float
        :func:`paste_masks`'s threshold.

    Returns
    -------
    (class_ids, scores, boxes, masks)
        int64 (n,), float32 (n,), float32 (n, 4) clipped to the image, bool (n, H, W).
        The masks are pasted with the unclipped boxes.
    """
    ids = np.asarray(ids).reshape(-1)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float32)
    if not (len(ids) == len(scores) == len(boxes) == len(masks)):
        raise ValueError('paste_detections expects as many ids, scores, boxes and masks, got '
                         '%d, %d, %d and %d' % (len(ids), len(scores), len(boxes), len(masks)))
    scale_y, scale_x = scales
    height, width = int(image_size[0]), int(image_size[1])
    keep = np.flatnonzero((ids >= 0) & (scores >= score_thresh))[:max_dets]
    boxes = boxes[keep] / np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)
    full = paste_masks(np.asarray(masks)[keep], boxes, (height, width), mask_thresh)
    boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    return ids[keep].astype(np.int64), scores[keep], boxes, full
