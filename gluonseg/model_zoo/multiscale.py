"""Multi-scale, flipped and sliding-window evaluation of a semantic segmentation network."""
import math

import mxnet as mx
from mxnet import autograd

from ..data.catalog import PUBLISHED_SCALES
from .registry import IMAGENET_MEAN, IMAGENET_STD

__all__ = ['MultiScaleEvaluator', 'DEFAULT_SCALES']

DEFAULT_SCALES = PUBLISHED_SCALES


class MultiScaleEvaluator:
    """Class scores of a network averaged over scales, horizontal flips and sliding windows,
    returned at each image's original resolution.

    For each scale the image's long side becomes ``ceil(base_size * scale)``. A resized image
    that fits in ``crop_size`` is padded to it and run once; a larger one is covered by
    ``crop_size`` windows with a stride of ``stride_rate * crop_size`` and overlapping windows
    are averaged. Padding is black (the normalized value of a 0 pixel). Every scale's scores
    are resized back to the original size and combined.

    Parameters
    ----------
    net : HybridBlock
        Returns (N, C, h, w) logits for a normalized (N, 3, h, w) batch, e.g. a gluonseg model.
    base_size, crop_size : int
        Size the scales refer to, and the window size.
    scales : sequence of float
    flip : bool
        Also run the horizontally flipped image.
    stride_rate : float
        Window stride as a fraction of ``crop_size``.
    combine : {'softmax', 'gluoncv'}
        ``'softmax'`` averages class probabilities over flips, windows and scales.
        ``'gluoncv'`` reproduces GluonCV's published protocol: ``exp(logits + flipped logits)``
        averaged over windows and summed over scales.
    mean, std : sequence of float
        The normalization of the inputs (to pad with black).
    """

    def __init__(self, net, base_size=520, crop_size=480, scales=DEFAULT_SCALES, flip=True,
                 stride_rate=2.0 / 3, combine='softmax', mean=IMAGENET_MEAN, std=IMAGENET_STD):
        if combine not in ('softmax', 'gluoncv'):
            raise ValueError("combine must be 'softmax' or 'gluoncv', not %r" % (combine,))
        self.net = net
        self.base_size = int(base_size)
        self.crop_size = int(crop_size)
        self.scales = tuple(scales)
        self.flip = flip
        self.stride = max(1, int(crop_size * stride_rate))
        self.combine = combine
        self._black = [-m / s for m, s in zip(mean, std)]

    def __call__(self, images):
        """Scores for a batch (N, 3, H, W) or a list of images of different sizes, each
        (3, H, W) or (1, 3, H, W). Returns an NDArray (N, C, H, W), or a list for a list."""
        if isinstance(images, (list, tuple)):
            return [self._batch_scores(img.reshape((1,) + img.shape[-3:]))[0] for img in images]
        return self._batch_scores(images)

    def predict(self, images):
        """Class ids (int32) at the original resolution; a list for a list of images."""
        scores = self(images)
        if isinstance(scores, list):
            return [s.argmax(axis=0).astype('int32') for s in scores]
        return scores.argmax(axis=1).astype('int32')

    def _batch_scores(self, images):
        _, _, height, width = images.shape
        total = None
        for scale in self.scales:
            long_size = int(math.ceil(self.base_size * scale))
            if height > width:
                new_h, new_w = long_size, int(1.0 * width * long_size / height + 0.5)
            else:
                new_h, new_w = int(1.0 * height * long_size / width + 0.5), long_size
            resized = mx.nd.contrib.BilinearResize2D(images, height=new_h, width=new_w)
            scores = self._windowed_scores(resized)
            scores = mx.nd.contrib.BilinearResize2D(scores, height=height, width=width)
            total = scores if total is None else total + scores
        if self.combine == 'softmax':
            total = total / len(self.scales)
        return total

    def _windowed_scores(self, image):
        n, _, height, width = image.shape
        crop = self.crop_size
        if max(height, width) <= crop:
            return self._flipped_scores(self._pad(image, crop, crop))[:, :, :height, :width]
        padded = self._pad(image, max(height, crop), max(width, crop))
        ph, pw = padded.shape[2:]
        rows = int(math.ceil(1.0 * (ph - crop) / self.stride)) + 1
        cols = int(math.ceil(1.0 * (pw - crop) / self.stride)) + 1
        scores, counts = None, mx.nd.zeros((1, 1, ph, pw), ctx=image.context)
        for row in range(rows):
            for col in range(cols):
                h0, w0 = row * self.stride, col * self.stride
                h1, w1 = min(h0 + crop, ph), min(w0 + crop, pw)
                window = self._pad(padded[:, :, h0:h1, w0:w1], crop, crop)
                out = self._flipped_scores(window)[:, :, :h1 - h0, :w1 - w0]
                if scores is None:
                    scores = mx.nd.zeros((n, out.shape[1], ph, pw), ctx=image.context)
                scores[:, :, h0:h1, w0:w1] += out
                counts[:, :, h0:h1, w0:w1] += 1
        return (scores / counts)[:, :, :height, :width]

    def _flipped_scores(self, image):
        logits = self._forward(image)
        if self.combine == 'gluoncv':
            if self.flip:
                logits = logits + self._forward(image.flip(axis=3)).flip(axis=3)
            return logits.exp()
        probs = logits.softmax(axis=1)
        if self.flip:
            probs = (probs + self._forward(image.flip(axis=3)).flip(axis=3).softmax(axis=1)) / 2
        return probs

    def _forward(self, image):
        with autograd.predict_mode():
            out = self.net(image)
        return out[0] if isinstance(out, (list, tuple)) else out

    def _pad(self, image, height, width):
        """Pad at the bottom and right to at least ``height`` x ``width`` with black."""
        n, c, h, w = image.shape
        if h >= height and w >= width:
            return image
        canvas = mx.nd.array(self._black, ctx=image.context).reshape((1, c, 1, 1))
        canvas = canvas.broadcast_to((n, c, max(h, height), max(w, width))).copy()
        canvas[:, :, :h, :w] = image
        return canvas
