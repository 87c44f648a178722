"""COCO box and mask AP of instance segmentation outputs, computed by pycocotools' COCOeval.

Predictions are given per image in the model's terms (contiguous class ids, scores, boxes
``x1, y1, x2, y2`` in the original image's pixels, masks) and turned into the COCO results
format: ``bbox`` as ``[x, y, width, height]`` with ``width = x2 - x1`` (the boxes are read in the
continuous pixel frame where pixel column j spans ``[j, j + 1)``, which is also the frame of the
COCO ground truth), and ``segmentation`` as a compressed RLE of the full-size binary mask.
"""
import contextlib
import copy
import functools
import io
import json
import os
from collections import OrderedDict

import numpy as np

from .atomic import write_atomically
from .coco_annotations import checked_coco, load_coco
from .paste import paste_masks

__all__ = ['COCOInstanceMetric', 'STAT_NAMES']

# The first six numbers of COCOeval.stats (maxDets 100), in order.
STAT_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')


def _pycocotools():
    try:
        from pycocotools.cocoeval import COCOeval  # lazy: optional, pip install pycocotools
        from pycocotools import mask as mask_utils  # lazy: optional, pip install pycocotools
    except ImportError as err:
        raise ImportError('COCOInstanceMetric needs pycocotools: pip install "gluonseg[coco]" '
                          '(or pip install pycocotools)') from err
    return COCOeval, mask_utils


def _to_numpy(x):
    if hasattr(x, 'asnumpy'):
        return x.asnumpy()
    return np.asarray(x)


class COCOInstanceMetric(object):
    """COCO bbox and segm AP, AP50, AP75, APs, APm, APl of per-image predictions.

    Parameters
    ----------
    coco_gt : COCOInstance, pycocotools.coco.COCO or str
        The ground truth: a :class:`gluonseg.data.COCOInstance` (its annotation file and class
        order are used), a loaded COCO object, or the path of a COCO-format annotation file.
        It is checked by :func:`gluonseg.utils.coco_annotations.validate_coco` before pycocotools
        evaluates it: invalid annotations (e.g. a NaN polygon) are a ``COCOAnnotationError``,
        degenerate ones are left out with a warning (a given COCO object is then replaced by a
        copy without them).
    category_ids : sequence of int, optional
        The file's category id of each class id. Default: ``coco_gt.cat_ids`` for a
        COCOInstance, else ``coco.getCatIds()`` (the order COCOInstance numbers classes in).
    iou_types : sequence of {'bbox', 'segm'}, default ('bbox', 'segm')
        What to evaluate; ``'segm'`` needs masks in :meth:`update`.
    mask_threshold : float, default 0.5
        Probability at which a mask pixel is in the object (full-size probability masks, and
        the default paste of box masks).
    paste : callable, optional
        ``paste(masks (K, M, M), boxes (K, 4), (H, W)) -> (K, H, W)`` binary masks, for box-sized
        mask probabilities (the Mask R-CNN ``masks`` output). Default:
        :func:`gluonseg.utils.paste.paste_masks` with ``mask_threshold``.
    score_threshold : float, default 0
        Detections scoring below this are left out.
    results_prefix : str, optional
        When set, :meth:`get` also writes the results as ``<prefix>_bbox.json`` and
        ``<prefix>_segm.json`` (the standard COCO results format).

    Notes
    -----
    Only the images passed to :meth:`update` are evaluated (so a run over part of val2017 is
    scored on that part); an image updated with no detection counts all its objects as missed.
    Without any update, every image of ``coco_gt`` is evaluated. An AP that COCOeval cannot
    define (no ground-truth object in that size range) is NaN here (COCOeval prints -1). COCOeval
    keeps the 100 best-scoring detections per image.
    """

    def __init__(self, coco_gt, category_ids=None, iou_types=('bbox', 'segm'), mask_threshold=0.5,
                 paste=None, score_threshold=0.0, results_prefix=None):
        self._cocoeval, self._mask_utils = _pycocotools()
        for iou_type in iou_types:
            if iou_type not in ('bbox', 'segm'):
                raise ValueError("iou_types must hold 'bbox' and/or 'segm', got %r" % (iou_type,))
        # pycocotools turns ground-truth polygons into masks for 'segm': check them first.
        with_masks = 'segm' in iou_types
        if isinstance(coco_gt, str):
            coco_gt = load_coco(os.path.expanduser(coco_gt), require_segmentation=with_masks)
        else:
            if hasattr(coco_gt, 'coco') and hasattr(coco_gt, 'cat_ids'):  # a COCOInstance
                if category_ids is None:
                    category_ids = coco_gt.cat_ids
                coco_gt = coco_gt.coco
            coco_gt = checked_coco(coco_gt, 'the ground truth given to COCOInstanceMetric',
                                   require_segmentation=with_masks)
        self.coco = coco_gt
        self.category_ids = list(category_ids if category_ids is not None else coco_gt.getCatIds())
        unknown = set(self.category_ids) - set(coco_gt.getCatIds())
        if unknown:
            raise ValueError('category_ids %s are not categories of the ground truth (%s)'
                             % (sorted(unknown), coco_gt.getCatIds()))
        self.iou_types = tuple(iou_types)
        self.mask_threshold = float(mask_threshold)
        self.paste = paste
        self.score_threshold = float(score_threshold)
        self.results_prefix = results_prefix
        self.reset()

    def reset(self):
        """Forget all predictions."""
        self._results = {'bbox': [], 'segm': []}
        self._image_ids = set()

    # ------------------------------------------------------------------ input
    def update(self, image_ids, class_ids, scores, boxes, masks=None):
        """Add the predictions of one image, or of several.

        Parameters
        ----------
        image_ids : int or sequence of int
            The COCO image id (``COCOInstance.image_ids[i]``), or one per image.
        class_ids : array_like (N,) or (N, 1)
            Contiguous class ids; negative ids (padding) are skipped. For several images: a
            sequence (or a batch array) of such arrays, one per image; likewise below.
        scores : array_like (N,) or (N, 1)
        boxes : array_like (N, 4)
            ``x1, y1, x2, y2`` in the original image's pixels.
        masks : array_like, optional
            Either full-size (N, H, W) masks (bool/int: nonzero is in; float: probability,
            compared with ``mask_threshold``), or (N, M, M) box mask probabilities, pasted into
            the image with ``paste``. Needed for ``'segm'`` when the image has detections.

        NDArrays are accepted anywhere.
        """
        if np.ndim(_to_numpy(image_ids)) == 0:
            self._add(int(_to_numpy(image_ids)), class_ids, scores, boxes, masks)
            return
        image_ids = [int(i) for i in np.asarray(_to_numpy(image_ids)).reshape(-1)]
        per_image = [class_ids, scores, boxes] + ([masks] if masks is not None else [])
        for part in per_image:
            if len(part) != len(image_ids):
                raise ValueError('got %d image ids but %d per-image predictions'
                                 % (len(image_ids), len(part)))
        for n, image_id in enumerate(image_ids):
            self._add(image_id, class_ids[n], scores[n], boxes[n],
                      masks[n] if masks is not None else None)

    def _add(self, image_id, class_ids, scores, boxes, masks):
        if image_id not in self.coco.imgs:
            raise ValueError('image id %d is not in the ground truth (%d images)'
                             % (image_id, len(self.coco.imgs)))
        class_ids = _to_numpy(class_ids).reshape(-1)
        scores = _to_numpy(scores).astype(np.float64).reshape(-1)
        boxes = _to_numpy(boxes).astype(np.float64).reshape(-1, 4)
        if not len(class_ids) == len(scores) == len(boxes):
            raise ValueError('image %d: %d class ids, %d scores and %d boxes; they must match'
                             % (image_id, len(class_ids), len(scores), len(boxes)))
        self._image_ids.add(image_id)
        keep = np.flatnonzero((class_ids >= 0) & np.isfinite(scores) & (scores >= self.score_threshold))
        bad = class_ids[keep][class_ids[keep] >= len(self.category_ids)]
        if len(bad):
            raise ValueError('image %d: class id(s) %s >= the number of classes %d'
                             % (image_id, np.unique(bad).tolist(), len(self.category_ids)))
        cats = [self.category_ids[int(c)] for c in class_ids[keep]]
        if 'bbox' in self.iou_types:
            for cat, score, (x1, y1, x2, y2) in zip(cats, scores[keep], boxes[keep]):
                self._results['bbox'].append({
                    'image_id': image_id, 'category_id': cat, 'score': round(float(score), 5),
                    'bbox': [round(float(v), 3) for v in (x1, y1, x2 - x1, y2 - y1)]})
        if 'segm' in self.iou_types and len(keep):
            if masks is None:
                raise ValueError("image %d: masks are needed for iou_types 'segm'" % image_id)
            binary = self._full_size_masks(image_id, _to_numpy(masks), boxes, keep)
            rles = self._mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
            for cat, score, rle in zip(cats, scores[keep], rles):
                rle['counts'] = rle['counts'].decode('ascii')
                self._results['segm'].append({'image_id': image_id, 'category_id': cat,
                                              'score': round(float(score), 5), 'segmentation': rle})

    def _full_size_masks(self, image_id, masks, boxes, keep):
        """uint8 (K, H, W) masks of the kept detections."""
        info = self.coco.imgs[image_id]
        height, width = int(info['height']), int(info['width'])
        if masks.ndim != 3 or len(masks) != len(boxes):
            raise ValueError('image %d: expected %d masks of shape (H, W) or (M, M), got an array of '
                             'shape %s' % (image_id, len(boxes), masks.shape))
        masks = masks[keep]
        if masks.shape[1:] == (height, width):
            if masks.dtype.kind == 'f':
                return (masks >= self.mask_threshold).astype(np.uint8)
            return (masks != 0).astype(np.uint8)
        if masks.shape[1] != masks.shape[2]:
            raise ValueError('image %d: masks of shape %s are neither full-size (%d, %d) nor square '
                             'box masks' % (image_id, masks.shape[1:], height, width))
        paste = self.paste
        if paste is None:

            def paste(m, b, size):
                return paste_masks(m, b, size, threshold=self.mask_threshold)
        pasted = np.asarray(paste(masks, boxes[keep], (height, width)))
        if pasted.shape != (len(masks), height, width):
            raise ValueError('paste returned shape %s, expected %s' % (pasted.shape, (len(masks), height, width)))
        if pasted.dtype.kind == 'f':
            return (pasted >= self.mask_threshold).astype(np.uint8)
        return (pasted != 0).astype(np.uint8)

    # ------------------------------------------------------------------ output
    def results(self, iou_type):
        """The COCO-format results (list of dicts) collected for ``iou_type``."""
        return list(self._results[iou_type])

    def write_results(self, prefix):
        """Write ``<prefix>_bbox.json`` / ``<prefix>_segm.json``; returns {iou_type: path}."""
        paths = {}
        for iou_type in self.iou_types:
            path = '%s_%s.json' % (prefix, iou_type)
            paths[iou_type] = write_atomically(
                path, functools.partial(json.dump, self._results[iou_type]), binary=False)
        return paths

    def _result_api(self, iou_type):
        results = self._results[iou_type]
        if results:
            with contextlib.redirect_stdout(io.StringIO()):
                return self.coco.loadRes(copy.deepcopy(results))  # loadRes adds fields in place
        # loadRes cannot take an empty list (it looks at the first result).
        coco_cls = type(self.coco)
        empty = coco_cls()
        empty.dataset = {'images': list(self.coco.dataset['images']),
                         'categories': copy.deepcopy(self.coco.dataset['categories']), 'annotations': []}
        with contextlib.redirect_stdout(io.StringIO()):
            empty.createIndex()
        return empty

    def evaluate(self):
        """Run COCOeval for every iou type; returns {iou_type: (stats (6,), summary text)}."""
        image_ids = sorted(self._image_ids) if self._image_ids else sorted(self.coco.getImgIds())
        out = {}
        for iou_type in self.iou_types:
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                evaluator = self._cocoeval(self.coco, self._result_api(iou_type), iou_type)
                evaluator.params.imgIds = image_ids
                evaluator.evaluate()
                evaluator.accumulate()
                evaluator.summarize()
            stats = np.array(evaluator.stats[:len(STAT_NAMES)], dtype=np.float64)
            stats[stats < 0] = np.nan  # -1: undefined (no ground truth in that range)
            out[iou_type] = (stats, text.getvalue())
        return out

    def get(self):
        """AP numbers in [0, 1], e.g. ``{'bbox/AP': ..., 'bbox/AP50': ..., 'segm/APl': ...}``.

        Also writes the results files when ``results_prefix`` was given.
        """
        if self.results_prefix:
            self.write_results(self.results_prefix)
        values = OrderedDict()
        self.summary_text = {}
        for iou_type, (stats, text) in self.evaluate().items():
            self.summary_text[iou_type] = text
            for name, value in zip(STAT_NAMES, stats):
                values['%s/%s' % (iou_type, name)] = float(value)
        return values

    def __repr__(self):
        return 'COCOInstanceMetric(images=%d, detections=%d, iou_types=%s)' % (
            len(self._image_ids), len(self._results['bbox'] or self._results['segm']), self.iou_types)
