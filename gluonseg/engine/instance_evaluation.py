"""COCO box and mask AP of an instance segmentation model on a dataset.

Each image is predicted the way the model is evaluated (:func:`~gluonseg.model_zoo.rcnn.
predict.predict_instances`: resize, network, boxes back to the image's pixels, masks pasted
at full size with the accurate sub-pixel paste) and scored with pycocotools through
:class:`~gluonseg.utils.coco_metric.COCOInstanceMetric`.
"""
import time

import numpy as np
from tqdm import tqdm

from ..data.coco_format import instances_to_coco
from ..data.transforms import load_image
from ..model_zoo.rcnn.predict import network_input, predict_instances
from ..utils.coco_metric import COCOInstanceMetric

__all__ = ['coco_ground_truth', 'evaluate_instances', 'calibration_inputs']


def coco_ground_truth(dataset):
    """``(coco_gt, image_ids)`` of a dataset: its own COCO file for a COCOInstance (image
    ``i`` is ``dataset.image_ids[i]``), else the dataset converted with
    :func:`gluonseg.data.coco_format.instances_to_coco` (image ``i`` has id ``i + 1``)."""
    if hasattr(dataset, 'coco') and hasattr(dataset, 'image_ids'):
        return dataset, list(dataset.image_ids)
    return instances_to_coco(dataset), [i + 1 for i in range(len(dataset))]


def _image(dataset, index):
    if hasattr(dataset, 'image_path'):  # COCOInstance: no need to decode the masks
        return load_image(dataset.image_path(index))
    return np.asarray(dataset[index][0])


def calibration_inputs(net, dataset, count, short=800, max_size=1333, mean=None, std=None):
    """The first ``count`` images of ``dataset`` as ``net`` receives them in
    :func:`evaluate_instances` (resized and normalized alike), one (1, 3, H, W) NDArray per
    image since sizes differ: ``calib_data`` for ``gluonseg.optimize(net, dtype='int8')``.
    Take them from the training split: calibrating on the evaluated images would flatter
    the int8 AP."""
    count = int(count)
    if not 0 < count <= len(dataset):
        raise ValueError('calibration needs 1 to %d images of the dataset, not %d'
                         % (len(dataset), count))
    return [network_input(net, _image(dataset, i), short, max_size, mean, std)[0]
            for i in range(count)]


def evaluate_instances(net, dataset, short=800, max_size=1333, score_thresh=0.001,
                       max_dets=100, limit=None, results_prefix=None, progress=False,
                       ground_truth=None, **predict_kwargs):
    """Predict every image of ``dataset`` and compute COCO AP.

    Parameters
    ----------
    net : MaskRCNN
        With weights; used in predict mode.
    dataset : COCOInstance, ShapesInstance or any dataset of ``(image, boxes, class_ids,
        masks)`` samples (no transform).
    short, max_size : int
        Test resize (800/1333 as the published AP was measured).
    score_thresh, max_dets : float, int
        Detections kept per image (0.001 and 100 for COCO evaluation).
    limit : int, optional
        Only the first ``limit`` images (the AP is then that of those images).
    results_prefix : str, optional
        Also write ``<prefix>_bbox.json`` and ``<prefix>_segm.json``.
    progress : bool
        Show a tqdm bar.
    ground_truth : (coco_gt, image_ids), optional
        Precomputed :func:`coco_ground_truth` (saves converting the dataset every time).
    **predict_kwargs
        Passed to ``predict_instances`` (e.g. ``mean``, ``std``).

    Returns
    -------
    (dict, COCOInstanceMetric)
        ``{'bbox/AP': ..., 'segm/AP': ..., ..., 'images': n, 'seconds': s}`` (AP in [0, 1]),
        and the metric (``metric.summary_text`` holds pycocotools' tables).
    """
    coco_gt, image_ids = ground_truth or coco_ground_truth(dataset)
    metric = COCOInstanceMetric(coco_gt, results_prefix=results_prefix)
    count = len(dataset) if limit is None else min(int(limit), len(dataset))
    indices = range(count)
    if progress:
        indices = tqdm(indices, desc='evaluating', leave=False, dynamic_ncols=True)
    tic = time.time()
    for index in indices:
        result = predict_instances(net, _image(dataset, index), short=short,
                                   max_size=max_size, score_thresh=score_thresh,
                                   max_dets=max_dets, **predict_kwargs)
        metric.update(image_ids[index], result.class_ids, result.scores, result.boxes,
                      result.masks)
    values = metric.get()
    values['images'] = count
    values['seconds'] = round(time.time() - tic, 2)
    return values, metric
