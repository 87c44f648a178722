"""Evaluate a segmentation network on a dataset: single-scale (data-parallel) or multi-scale."""
import time

import mxnet as mx
from mxnet import autograd, gluon
from tqdm import tqdm

from ..data.transforms import pad_batchify
from ..utils.metrics import SegmentationMetric

__all__ = ['evaluate_segmentation', 'predict_batch', 'batchify_with_padding']


def _main_output(out):
    return out[0] if isinstance(out, (list, tuple)) else out


def predict_batch(net, images, ctx_list, evaluator=None):
    """Class ids (N, H, W) of a batch, split across ``ctx_list``.

    Parameters
    ----------
    net : Block
        Returns logits (or ``(out, aux)``) at the input size.
    images : NDArray
        (N, 3, H, W) normalized images.
    ctx_list : list of Context
    evaluator : callable, optional
        E.g. a :class:`gluonseg.model_zoo.multiscale.MultiScaleEvaluator` (then scores are
        computed on ``ctx_list[0]``).

    Returns
    -------
    list of NDArray
        int32 class ids, one array per device part.
    """
    if evaluator is not None:
        return [evaluator.predict(images.as_in_context(ctx_list[0]))]
    parts = gluon.utils.split_and_load(images, ctx_list, even_split=False)
    preds = []
    with autograd.predict_mode():
        for x in parts:
            preds.append(_main_output(net(x)).argmax(axis=1).astype('int32'))
    return preds


def batchify_with_padding(samples):
    """Stack ``(image, mask)`` samples of different sizes, padding masks with 255 (ignored)."""
    return pad_batchify(samples, image_pad=0.0, mask_pad=255)


def evaluate_segmentation(net, dataset, ctx=mx.cpu(), batch_size=8, nclass=None,
                          ignore_index=255, evaluator=None, num_workers=0, batchify_fn=None,
                          progress=False, metric=None):
    """pixAcc / mIoU of ``net`` on ``dataset``.

    Parameters
    ----------
    net : Block
    dataset : Dataset
        ``(image float32 CHW normalized, mask int HxW)`` samples (a dataset with a
        ``SegmentationValTransform`` or ``SegmentationTestValTransform``).
    ctx : Context or list of Context
        Batches are split across these.
    batch_size : int
        Total batch size (images of different sizes are padded; with ``evaluator`` use 1 for
        full-size "testval" images so that no padding enters the multi-scale windows).
    nclass : int, optional
        Default: ``len(dataset.classes)`` or ``net.nclass``.
    ignore_index : int, default 255
    evaluator : callable, optional
        Multi-scale evaluator with a ``predict(images)`` method.
    num_workers : int, default 0
    batchify_fn : callable, optional
        Default pads different-sized samples (masks with ``ignore_index``).
    progress : bool
        Show a tqdm bar.
    metric : SegmentationMetric, optional
        Accumulate into this one.

    Returns
    -------
    SegmentationMetric
        With attribute ``seconds``, the wall time of the evaluation.
    """
    ctx_list = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    if nclass is None:
        nclass = getattr(dataset, 'num_class', None) or getattr(net, 'nclass', None)
        if nclass is None:
            raise ValueError('Pass nclass: neither the dataset nor the network tells it')
    metric = metric or SegmentationMetric(nclass, ignore_index=ignore_index)
    loader = gluon.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                   last_batch='keep', num_workers=num_workers,
                                   batchify_fn=batchify_fn or batchify_with_padding)
    batches = loader
    if progress:
        batches = tqdm(loader, desc='evaluate', leave=False, dynamic_ncols=True)
    start = time.time()
    for images, masks in batches:
        used = ctx_list[:images.shape[0]]  # a last batch smaller than the device count
        preds = predict_batch(net, images, used, evaluator)
        if len(preds) == 1:
            labels = [masks]
        else:
            labels = gluon.utils.split_data(masks, len(used), even_split=False)
        metric.update(labels, preds)
    metric.seconds = time.time() - start
    return metric
