"""Training transform and batching of instance segmentation samples (Mask R-CNN).

Samples are ``(image, boxes, class_ids, masks)`` as :class:`~gluonseg.data.COCOInstance` and
:class:`~gluonseg.data.ShapesInstance` return them: uint8 (H, W, 3) RGB, float32 (N, 4)
``x1, y1, x2, y2`` with inclusive ends, int (N,) class ids, uint8 (N, H, W) binary masks.
:func:`resize_short_within` is the resize rule of training and of Mask R-CNN's inference
(:mod:`gluonseg.model_zoo.rcnn.predict`).
"""
import mxnet as mx
import numpy as np

from .transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_image, short_within_size

__all__ = ['InstanceTrainTransform', 'instance_batchify', 'resize_short_within']


def resize_short_within(image, short=800, max_size=1333):
    """Resize a uint8 HxWx3 image so that its short side is ``short`` unless the long side
    would exceed ``max_size`` (then the long side is ``max_size``); bilinear.

    Returns
    -------
    (numpy.ndarray, (float, float))
        The resized image and the (y, x) scale factors new / old.
    """
    height, width = image.shape[:2]
    new_h, new_w = short_within_size(height, width, short, max_size)
    resized = mx.image.imresize(mx.nd.array(image, dtype='uint8'), new_w, new_h,
                                interp=1).asnumpy()
    return resized, (new_h / float(height), new_w / float(width))


def _resize_masks(masks, height, width):
    """Binary (N, h, w) masks resized to (N, height, width): bilinear, then >= 0.5."""
    if masks.shape[1:] == (height, width):
        return masks
    out = np.zeros((len(masks), height, width), dtype=np.uint8)
    for n, mask in enumerate(masks):
        resized = mx.image.imresize(mx.nd.array(mask[:, :, None] * 255, dtype='uint8'),
                                    width, height, interp=1).asnumpy()
        out[n] = resized.reshape(height, width) >= 128
    return out


class InstanceTrainTransform(object):
    """Resize (short side within a long-side cap), random horizontal flip, normalize.

    Parameters
    ----------
    short, max_size : int
        The short side becomes ``short`` unless the long side would exceed ``max_size``
        (then the long side is ``max_size``); 800/1333 as the published models were
        trained. Bilinear for the image, bilinear + threshold 0.5 for the masks.
    flip : bool
        Mirror left-right with probability 0.5.
    mean, std : sequence of 3 floats
        Normalization (ImageNet's by default).

    Attributes
    ----------
    rng : numpy.random.RandomState or module
        Source of the flips. :class:`gluonseg.engine.SeededTransformDataset` sets it per
        sample from ``(seed, epoch, index)``, so a resumed run sees the same flips.

    Notes
    -----
    Returns ``(image float32 (3, H', W'), boxes float32 (N, 4), class_ids float32 (N,),
    masks uint8 (N, H', W'))``. Boxes are scaled by the per-axis resize factors and mirrored
    as inclusive pixel ranges (``x1' = W' - 1 - x2``).
    """

    def __init__(self, short=800, max_size=1333, flip=True, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD):
        self.short, self.max_size, self.flip = int(short), int(max_size), bool(flip)
        self.mean, self.std = tuple(mean), tuple(std)
        self.rng = np.random

    def __repr__(self):
        return 'InstanceTrainTransform(short=%d, max_size=%d, flip=%s)' % (
            self.short, self.max_size, self.flip)

    def __call__(self, image, boxes, class_ids, masks):
        image = np.asarray(image)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
        masks = np.asarray(masks, dtype=np.uint8)
        height, width = image.shape[:2]
        if masks.shape != (len(boxes), height, width):
            raise ValueError('InstanceTrainTransform: %d boxes need masks of shape %s, got %s'
                             % (len(boxes), (len(boxes), height, width), masks.shape))
        resized, (scale_y, scale_x) = resize_short_within(image, self.short, self.max_size)
        new_h, new_w = resized.shape[:2]
        if (new_h, new_w) != (height, width):
            boxes *= np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)
            masks = _resize_masks(masks, new_h, new_w)
        if self.flip and self.rng.random_sample() < 0.5:
            resized = resized[:, ::-1]
            masks = masks[:, :, ::-1]
            boxes = np.stack([new_w - 1 - boxes[:, 2], boxes[:, 1], new_w - 1 - boxes[:, 0],
                              boxes[:, 3]], axis=1)
        return (normalize_image(np.ascontiguousarray(resized), self.mean, self.std),
                boxes.astype(np.float32), np.asarray(class_ids, dtype=np.float32).reshape(-1),
                np.ascontiguousarray(masks))


def instance_batchify(samples):
    """Stack transformed samples into padded NDArrays.

    Images are zero-padded at the bottom/right to the largest size of the batch (zero is
    the mean colour after normalization); objects are padded to the largest count with
    boxes and class ids of -1 and empty masks (at least one row, so that no array is empty).

    Returns
    -------
    (images (B, 3, H, W) float32, boxes (B, G, 4) float32, class_ids (B, G) float32,
    masks (B, G, H, W) uint8)
    """
    batch = len(samples)
    height = max(s[0].shape[1] for s in samples)
    width = max(s[0].shape[2] for s in samples)
    objects = max(1, max(len(s[1]) for s in samples))
    images = np.zeros((batch, 3, height, width), dtype=np.float32)
    boxes = np.full((batch, objects, 4), -1, dtype=np.float32)
    class_ids = np.full((batch, objects), -1, dtype=np.float32)
    masks = np.zeros((batch, objects, height, width), dtype=np.uint8)
    for b, (image, box, ids, mask) in enumerate(samples):
        image = np.asarray(image)
        images[b, :, :image.shape[1], :image.shape[2]] = image
        count = len(box)
        boxes[b, :count] = box
        class_ids[b, :count] = ids
        masks[b, :count, :mask.shape[1], :mask.shape[2]] = mask
    return (mx.nd.array(images), mx.nd.array(boxes), mx.nd.array(class_ids),
            mx.nd.array(masks, dtype='uint8'))
