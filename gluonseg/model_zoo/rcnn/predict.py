"""Instance predictions for images of any size, in their own coordinates.

:func:`predict_instances` resizes an image the way the published models were evaluated
(short side 800, long side at most 1333, bilinear:
:func:`~gluonseg.data.instance_transforms.resize_short_within`), runs the network, keeps
the detections above a score, maps boxes back to the original pixels (per-axis scale) and
pastes their masks at full size with :func:`~gluonseg.utils.paste.paste_detections` (NumPy
only: the ONNX deploy script uses it too).
"""
from dataclasses import dataclass, field
from typing import Tuple

import mxnet as mx
import numpy as np
from mxnet import autograd

from ...data.instance_transforms import resize_short_within
from ...data.transforms import IMAGENET_MEAN, IMAGENET_STD, load_image, normalize_image
from ...utils.paste import paste_detections

__all__ = ['InstancePrediction', 'network_input', 'predict_instances']


@dataclass
class InstancePrediction:
    """The kept detections of one image, best first, in its original pixels.

    Attributes
    ----------
    class_ids : numpy.ndarray (K,) int
    class_names : tuple of str (K,)
    scores : numpy.ndarray (K,) float32
    boxes : numpy.ndarray (K, 4) float32, ``x1, y1, x2, y2`` clipped to the image
    masks : numpy.ndarray (K, H, W) bool, full image size
    image_size : (H, W)
    """
    class_ids: np.ndarray
    class_names: Tuple[str, ...]
    scores: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    image_size: Tuple[int, int] = field(default=(0, 0))

    def __len__(self):
        return len(self.scores)


def _first_ctx(net):
    return next(iter(net.collect_params().values())).list_ctx()[0]


def network_input(net, image, short=800, max_size=1333, mean=None, std=None):
    """What ``net`` receives for a uint8 HxWx3 ``image`` in :func:`predict_instances`:
    ``(x, (scale_y, scale_x))``, x the resized, normalized (1, 3, H', W') NDArray on the
    network's context (e.g. int8 calibration images prepared like the evaluated ones).

    ``mean``, ``std`` default to the registry entry's, else ImageNet's.
    """
    info = getattr(net, 'gluonseg_info', None)
    mean = mean or (info.mean if info is not None else IMAGENET_MEAN)
    std = std or (info.std if info is not None else IMAGENET_STD)
    resized, scales = resize_short_within(image, short, max_size)
    return mx.nd.array(normalize_image(resized, mean, std)[None], ctx=_first_ctx(net)), scales


def predict_instances(net, images, short=800, max_size=1333, score_thresh=0.5, max_dets=100,
                      mask_thresh=0.5, mean=None, std=None, raw=False):
    """Detections with full-size masks for one image or a list of images.

    Parameters
    ----------
    net : MaskRCNN
        With weights (e.g. ``gluonseg.get_model('mask_rcnn_fpn_resnet50_v1b_coco',
        pretrained=True)``).
    images : str, PIL.Image.Image, numpy.ndarray, or a list of those
        Paths, PIL images, or uint8 HxWx3 RGB arrays, any size.
    short, max_size : int
        Resize rule (800/1333: how the published AP was measured; GluonCV's demos used
        600/1000, which is faster and less accurate).
    score_thresh : float
        Keep detections scoring at least this (0.001 for COCO evaluation).
    max_dets : int
        Keep at most this many detections per image (100 for COCO evaluation).
    mask_thresh : float
        Mask probability threshold of the paste.
    mean, std : sequence of 3 floats
        Input normalization (default: the registry entry's, else ImageNet's).
    raw : bool
        Run the raw forward (GluonCV's 1000 rows, masks for every row) and select from it,
        instead of :meth:`~.mask_rcnn.MaskRCNN.detect`, which computes masks for the kept
        detections only (same detections, faster).

    Returns
    -------
    InstancePrediction, or a list of them for a list of images.
    """
    if isinstance(images, (list, tuple)):
        return [predict_instances(net, image, short, max_size, score_thresh, max_dets,
                                  mask_thresh, mean, std, raw) for image in images]
    image = load_image(images)
    x, (scale_y, scale_x) = network_input(net, image, short, max_size, mean, std)
    with autograd.predict_mode():
        if raw or not hasattr(net, 'detect'):
            outputs = net(x)
        else:
            outputs = net.detect(x, score_thresh=score_thresh, max_dets=max_dets)
        ids, scores, boxes, masks = [o[0].asnumpy() for o in outputs]
    height, width = image.shape[:2]
    class_ids, scores, boxes, full = paste_detections(
        ids, scores, boxes, masks, (height, width), (scale_y, scale_x), score_thresh,
        max_dets, mask_thresh)
    return InstancePrediction(class_ids, tuple(net.classes[c] for c in class_ids),
                              scores, boxes, full, (height, width))
