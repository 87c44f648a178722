"""Semantic segmentation metrics accumulated on a confusion matrix.

Convention
----------
Every number is derived from one ``nclass x nclass`` confusion matrix summed over the whole
dataset (rows: ground truth, columns: prediction); pixels whose label is ``ignore_index`` are
left out. For a class ``c``: ``IoU_c = TP / (TP + FP + FN)``.

A class that appears neither in the ground truth nor in the prediction has an undefined IoU
(0/0). By default (``absent_class='nan'``) it is NaN and left out of the mean, so the mIoU of a
subset of the data is not dragged down by classes the subset does not contain.
``absent_class='zero'`` counts it as IoU 0 and averages over all ``nclass`` classes, which is
what GluonCV's ``SegmentationMetric`` does; use it only to compare with GluonCV's numbers. On a
full benchmark split where every class occurs, both conventions give the same mIoU.
"""
import numpy as np

__all__ = ['SegmentationMetric']

_ABSENT_CHOICES = ('nan', 'zero')
_CHUNK = 1 << 18  # pixels per bincount pass


def _to_numpy(x):
    """NDArray / numpy / nested list -> numpy array (without copying numpy input)."""
    if hasattr(x, 'asnumpy'):
        return x.asnumpy()
    return np.asarray(x)


def _class_ids(pred, label_ndim):
    """Predicted class ids from ids or logits.

    ``pred`` with one more axis than the labels holds per-class scores; the class axis is the one
    just before the two spatial axes ((N,C,H,W) for (N,H,W) labels, (C,H,W) for (H,W) labels).
    The argmax is taken before any copy to numpy, so an NDArray of logits is reduced on its
    device rather than copied C times larger to the host.
    """
    if len(pred.shape) == label_ndim + 1:
        if hasattr(pred, 'asnumpy'):
            import mxnet as mx  # lazy: only for NDArray input; numpy needs no MXNet
            return mx.nd.argmax(pred, axis=-3).asnumpy()
        return _argmax_class_axis(np.asarray(pred))
    return _to_numpy(pred)


def _argmax_class_axis(scores):
    """np.argmax(scores, axis=-3), ties to the lowest id, ~5x faster than numpy's strided argmax.

    One running max over the class planes of each sample, so every pass is contiguous.
    """
    nclass = scores.shape[-3]
    flat = scores.reshape((-1,) + scores.shape[-3:])
    out = np.empty((flat.shape[0],) + scores.shape[-2:], dtype=np.uint8 if nclass <= 256 else np.int32)
    for i, sample in enumerate(flat):
        best = sample[0].copy()
        ids = out[i]
        ids[...] = 0
        better = np.empty(best.shape, dtype=bool)
        for c in range(1, nclass):
            np.greater(sample[c], best, out=better)
            np.maximum(best, sample[c], out=best)
            np.copyto(ids, c, where=better, casting='unsafe')
    return out.reshape(scores.shape[:-3] + scores.shape[-2:])


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


class SegmentationMetric(object):
    """Pixel accuracy and mean IoU over a dataset, accumulated in a confusion matrix.

    Parameters
    ----------
    nclass : int
        Number of classes; valid labels and predictions are ``0 .. nclass-1``.
    ignore_index : int or None, default 255
        Label value of pixels that are not scored (VOC's object borders, padding). GluonCV-style
        ``-1`` works too. ``None`` means every pixel must carry a valid label.
    absent_class : {'nan', 'zero'}, default 'nan'
        IoU of a class absent from both ground truth and prediction: ``'nan'`` leaves it out of
        the mean; ``'zero'`` counts it as 0 (GluonCV's convention). See the module docstring.

    Examples
    --------
    >>> metric = SegmentationMetric(21)
    >>> metric.update(labels, logits)           # (N,H,W) and (N,21,H,W), NDArray or numpy
    >>> pix_acc, miou = metric.get()
    """

    def __init__(self, nclass, ignore_index=255, absent_class='nan'):
        nclass = int(nclass)
        if nclass < 1:
            raise ValueError('nclass must be >= 1, got %d' % nclass)
        if absent_class not in _ABSENT_CHOICES:
            raise ValueError("absent_class must be one of %s, got %r" % (_ABSENT_CHOICES, absent_class))
        if ignore_index is not None:
            ignore_index = int(ignore_index)
            if 0 <= ignore_index < nclass:
                raise ValueError('ignore_index %d is a valid class id for nclass=%d; it would hide that class'
                                 % (ignore_index, nclass))
        self.nclass = nclass
        self.ignore_index = ignore_index
        self.absent_class = absent_class
        self._cm = np.zeros((nclass, nclass), dtype=np.int64)

    # ------------------------------------------------------------------ accumulation
    def reset(self):
        """Forget everything accumulated so far."""
        self._cm[:] = 0

    def update(self, labels, preds):
        """Add a batch (or a list of per-device batches) to the confusion matrix.

        Parameters
        ----------
        labels : NDArray or numpy.ndarray, or list of them
            Ground truth class ids, shape (N,H,W) or (H,W). ``ignore_index`` pixels are skipped.
        preds : NDArray or numpy.ndarray, or list of them
            Either class ids with the labels' shape, or scores/logits with one more axis,
            (N,C,H,W) or (C,H,W), reduced by argmax over C.

        Raises
        ------
        ValueError
            On shape mismatch, or a label/prediction outside ``[0, nclass)`` that is not the
            ignore value.
        """
        labels, preds = _as_list(labels), _as_list(preds)
        if len(labels) != len(preds):
            raise ValueError('update() got %d label arrays but %d prediction arrays'
                             % (len(labels), len(preds)))
        batch_cm = np.zeros_like(self._cm)  # added only once every array passed its checks
        for label, pred in zip(labels, preds):
            label = _to_numpy(label)
            pred = _class_ids(pred, label.ndim)
            if label.shape != pred.shape:
                raise ValueError('labels have shape %s but predictions have shape %s (after argmax over '
                                 'the class axis if scores were given)' % (label.shape, pred.shape))
            batch_cm += self._confusion(label, pred)
        self._cm += batch_cm

    def _confusion(self, label, pred):
        n = self.nclass
        label, pred = label.reshape(-1), pred.reshape(-1)
        counts = np.zeros((n + 1) * n, dtype=np.int64)
        # Chunks of a few hundred thousand pixels keep the temporaries in cache: ~3x faster than
        # one pass over a whole batch, and memory stays flat.
        for start in range(0, label.size, _CHUNK):
            lab = label[start:start + _CHUNK]
            prd = pred[start:start + _CHUNK]
            scored = (lab >= 0) & (lab < n)
            if not scored.all():
                self._check_unscored(lab[~scored])
            # Unscored pixels go to an extra row n that is dropped at the end.
            row = np.where(scored, lab, n).astype(np.intp)
            prd = prd.astype(np.intp)
            if prd.size and (prd.min() < 0 or prd.max() >= n):
                bad = scored & ((prd < 0) | (prd >= n))
                if bad.any():
                    raise ValueError('predictions contain class ids %s outside [0, %d)'
                                     % (np.unique(prd[bad])[:10].tolist(), n))
                prd = np.where(scored, prd, 0)  # out-of-range ids only on ignored pixels
            row *= n
            row += prd
            counts += np.bincount(row, minlength=(n + 1) * n)
        return counts[:n * n].reshape(n, n)

    def _check_unscored(self, values):
        """Raise unless every label outside [0, nclass) is the ignore value."""
        bad = values if self.ignore_index is None else values[values != self.ignore_index]
        if bad.size:
            raise ValueError(
                'labels contain %s outside [0, %d) that %s; check the dataset\'s label encoding '
                '(e.g. RGB colours instead of class ids, or an unmapped ignore value)'
                % (np.unique(bad)[:10].tolist(), self.nclass,
                   'are not the ignore value %d' % self.ignore_index if self.ignore_index is not None
                   else 'cannot be scored (ignore_index=None)'))

    def merge(self, other):
        """Add the counts of another metric (e.g. from another worker) to this one.

        Parameters
        ----------
        other : SegmentationMetric or dict
            A metric or its :meth:`state_dict`; must have the same ``nclass`` and ``ignore_index``.

        Returns
        -------
        SegmentationMetric
            ``self``, so merges can be chained.
        """
        if isinstance(other, dict):
            other = SegmentationMetric.from_state_dict(other)
        if other.nclass != self.nclass or other.ignore_index != self.ignore_index:
            raise ValueError('cannot merge a metric with nclass=%d, ignore_index=%s into one with '
                             'nclass=%d, ignore_index=%s' % (other.nclass, other.ignore_index,
                                                             self.nclass, self.ignore_index))
        self._cm += other._cm
        return self

    # ------------------------------------------------------------------ results
    @property
    def confusion_matrix(self):
        """Copy of the (nclass, nclass) int64 counts; row = ground truth, column = prediction."""
        return self._cm.copy()

    def _ratio(self, num, den):
        """num/den elementwise; 0/0 -> NaN, or 0 under absent_class='zero'."""
        num = np.asarray(num, dtype=np.float64)
        den = np.asarray(den, dtype=np.float64)
        out = np.full(num.shape, np.nan if self.absent_class == 'nan' else 0.0)
        np.divide(num, den, out=out, where=den > 0)
        return out

    def per_class_iou(self):
        """IoU of each class, shape (nclass,), float64; absent classes per ``absent_class``."""
        tp = np.diag(self._cm)
        union = self._cm.sum(axis=0) + self._cm.sum(axis=1) - tp
        return self._ratio(tp, union)

    def per_class_acc(self):
        """Fraction of each class's ground-truth pixels predicted correctly (recall).

        A class with no ground-truth pixels gets NaN (or 0 under ``absent_class='zero'``).
        """
        return self._ratio(np.diag(self._cm), self._cm.sum(axis=1))

    def pixel_accuracy(self):
        """Correct pixels / scored pixels (NaN, or 0 under 'zero', before any update)."""
        return float(self._ratio(np.trace(self._cm), self._cm.sum()))

    def mean_iou(self):
        """Mean of :meth:`per_class_iou`, NaN classes left out (NaN if no class is defined)."""
        iou = self.per_class_iou()
        valid = ~np.isnan(iou)
        return float(iou[valid].mean()) if valid.any() else float('nan')

    def mean_acc(self):
        """Mean of :meth:`per_class_acc`, NaN classes left out."""
        acc = self.per_class_acc()
        valid = ~np.isnan(acc)
        return float(acc[valid].mean()) if valid.any() else float('nan')

    def fw_iou(self):
        """Frequency-weighted IoU: per-class IoU weighted by the class's share of ground-truth pixels."""
        gt = self._cm.sum(axis=1).astype(np.float64)
        if gt.sum() == 0:
            return float('nan') if self.absent_class == 'nan' else 0.0
        iou = self.per_class_iou()
        present = gt > 0
        return float((gt[present] * iou[present]).sum() / gt.sum())

    def get(self):
        """Return ``(pixAcc, mIoU)`` as python floats."""
        return self.pixel_accuracy(), self.mean_iou()

    # ------------------------------------------------------------------ export
    def state_dict(self):
        """Plain-python (JSON-serialisable) state: settings and the confusion matrix as nested lists."""
        return {'nclass': self.nclass, 'ignore_index': self.ignore_index,
                'absent_class': self.absent_class, 'confusion_matrix': self._cm.tolist()}

    def load_state_dict(self, state):
        """Replace the accumulated counts by those of ``state`` (from :meth:`state_dict`)."""
        cm = np.asarray(state['confusion_matrix'], dtype=np.int64)
        if cm.shape != (self.nclass, self.nclass):
            raise ValueError('confusion_matrix in state has shape %s, expected (%d, %d)'
                             % (cm.shape, self.nclass, self.nclass))
        if state.get('ignore_index', self.ignore_index) != self.ignore_index:
            raise ValueError('state has ignore_index=%s, this metric has %s'
                             % (state['ignore_index'], self.ignore_index))
        self._cm[:] = cm
        return self

    @classmethod
    def from_state_dict(cls, state):
        """Build a metric from :meth:`state_dict` output."""
        metric = cls(state['nclass'], ignore_index=state.get('ignore_index', 255),
                     absent_class=state.get('absent_class', 'nan'))
        return metric.load_state_dict(state)

    def summary(self, class_names=None):
        """Dict of all scalar results plus per-class IoU/accuracy keyed by class name (for logging/JSON)."""
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.nclass)]
        if len(names) != self.nclass:
            raise ValueError('got %d class names for nclass=%d' % (len(names), self.nclass))

        def clean(v):
            return None if np.isnan(v) else float(v)
        pix_acc, miou = self.get()
        return {'pixAcc': clean(pix_acc), 'mIoU': clean(miou), 'mAcc': clean(self.mean_acc()),
                'fwIoU': clean(self.fw_iou()),
                'per_class_iou': {k: clean(v) for k, v in zip(names, self.per_class_iou())},
                'per_class_acc': {k: clean(v) for k, v in zip(names, self.per_class_acc())}}

    def __repr__(self):
        pix_acc, miou = self.get()
        return 'SegmentationMetric(nclass=%d, pixAcc=%.4f, mIoU=%.4f, pixels=%d)' % (
            self.nclass, pix_acc, miou, int(self._cm.sum()))
