"""Joint image + mask transforms (numpy/PIL), image loading and batchify helpers.

Images enter as uint8 HxWx3 RGB numpy arrays and leave as float32 CHW arrays normalised with
the ImageNet mean/std on RGB/255 (what the GluonCV-compatible backbones expect). Masks are
int32 HxW class ids; they are only ever resized with NEAREST, padded with the ignore label and
cropped/flipped together with the image, so they never gain values other than their own and
the ignore label.

Randomness comes from ``rng``: a ``numpy.random.RandomState`` (or anything with its
``uniform``/``randint``/``rand`` methods), or ``None`` for numpy's global RNG, so that
``np.random.seed(s)`` makes a run reproducible. DataLoader worker *processes* are forked with
identical copies of that global state, which would give every worker the same sequence of
crops and flips; so with ``rng=None`` a transform called in a process other than the one that
created it switches to a RandomState seeded from the inherited state plus the process id.
Augmentation is then different per worker but not reproducible; use ``num_workers=0`` or
``thread_pool=True`` for bit-exact reruns.
"""
import os

import numpy as np
from PIL import Image, ImageFilter

__all__ = ['IMAGENET_MEAN', 'IMAGENET_STD', 'load_image', 'normalize_image',
           'SegmentationTrainTransform', 'SegmentationValTransform', 'SegmentationTestValTransform',
           'pad_batchify']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(x):
    """Return ``x`` as a uint8 HxWx3 RGB numpy array.

    Parameters
    ----------
    x : str, os.PathLike, PIL.Image.Image, numpy.ndarray or mxnet NDArray
        A file path (any format PIL reads; greyscale, palette and CMYK files are converted to
        RGB), a PIL image, or an array: HxWx3 RGB (not BGR: convert OpenCV images first), HxWx4
        RGBA (alpha dropped), HxW or HxWx1 greyscale (replicated). Arrays must be uint8, or an
        integer/bool type with values in 0..255; float arrays are refused because their scale
        (0..1 or 0..255) is ambiguous.

    Returns
    -------
    numpy.ndarray
        uint8, shape (H, W, 3), C-contiguous.
    """
    if isinstance(x, (str, bytes, os.PathLike)):
        with Image.open(x) as img:
            return np.asarray(img.convert('RGB'), dtype=np.uint8).copy()
    if isinstance(x, Image.Image):
        return np.asarray(x.convert('RGB'), dtype=np.uint8).copy()
    if hasattr(x, 'asnumpy'):
        x = x.asnumpy()
    if not isinstance(x, np.ndarray):
        raise TypeError('load_image expects a path, PIL image or HxWx3 array, got %s' % type(x).__name__)
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating):
            raise TypeError('load_image got a %s image array; convert it to uint8 0..255 first (its scale, '
                            '0..1 or 0..255, is ambiguous)' % x.dtype)
        if x.size and (x.min() < 0 or x.max() > 255):
            raise ValueError('load_image got %s values in [%s, %s]; expected 0..255'
                             % (x.dtype, x.min(), x.max()))
        x = x.astype(np.uint8)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    if x.ndim == 2:
        x = np.stack([x] * 3, axis=-1)
    elif x.ndim == 3 and x.shape[2] == 4:
        x = x[:, :, :3]
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError('load_image expects an HxWx3 (RGB) array, got shape %s' % (x.shape,))
    return np.ascontiguousarray(x)


def normalize_image(img, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 HxWx3 RGB -> float32 CHW ``(img / 255 - mean) / std``.

    Parameters
    ----------
    img : numpy.ndarray
        (H, W, 3) RGB, uint8 (or already float in 0..255).
    mean, std : sequence of 3 floats
        Per-channel statistics on the 0..1 scale (ImageNet's by default).
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError('normalize_image expects HxWx3, got shape %s' % (img.shape,))
    scale = np.float32(1.0 / 255) / np.asarray(std, dtype=np.float32)
    shift = np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)
    out = img.transpose(2, 0, 1).astype(np.float32)
    out *= scale[:, None, None]
    out -= shift[:, None, None]
    return out


def _pair(size, name):
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError('%s must be an int or (height, width), got %s' % (name, size))
    return size


def _resize_image(img, height, width):
    if img.shape[:2] == (height, width):
        return img
    return np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))


def _resize_mask(mask, height, width):
    """NEAREST resize; values are copied, never blended."""
    if mask.shape == (height, width):
        return mask
    if mask.min() >= 0 and mask.max() <= 255:
        resized = Image.fromarray(mask.astype(np.uint8)).resize((width, height), Image.NEAREST)
    else:  # e.g. an ignore value of -1: 32-bit integer image
        resized = Image.fromarray(mask.astype(np.int32)).resize((width, height), Image.NEAREST)
    return np.asarray(resized, dtype=np.int32)


def _as_mask(mask):
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError('mask must be HxW, got shape %s' % (mask.shape,))
    return mask.astype(np.int32, copy=False)


def _check_pair(img, mask):
    if mask is not None and img.shape[:2] != mask.shape:
        raise ValueError('image is %dx%d but mask is %dx%d (HxW)' % (img.shape[:2] + mask.shape))


class SegmentationTrainTransform(object):
    """Training augmentation: random scale, pad, random crop, flip, optional blur, normalise.

    Steps, in order:

    1. **scale**: the *short* side (``scale_side='short'``) becomes
       ``round(base_size * s)`` with ``s ~ U(scale_range)``, aspect kept (image bilinear, mask
       nearest). Scaling the short side makes ``base_size`` mean the same thing for portrait
       and landscape images. GluonCV scales the *long* side; ``scale_side='long'`` does that;
    2. **pad** bottom/right up to the crop size if needed: image with 0 (black, which becomes
       ``-mean/std`` after normalisation), mask with ``ignore_index`` so the padding is not
       trained as background (GluonCV pads the mask with 0 = background);
    3. **random crop** of ``crop_size``;
    4. **horizontal flip** with probability 0.5 (if ``flip``);
    5. **Gaussian blur** with probability 0.5, radius ~ U(0, 1) (if ``blur``; image only);
    6. **normalise** to float32 CHW with ``mean``/``std``.

    Parameters
    ----------
    base_size : int, default 520
    crop_size : int or (int, int), default 480
    scale_range : (float, float), default (0.5, 2.0)
    flip : bool, default True
    blur : bool, default False
    mean, std : sequence of 3 floats, default ImageNet
    ignore_index : int, default 255
        Mask value used for padding.
    scale_side : {'short', 'long'}, default 'short'
    rng : numpy.random.RandomState, optional
        Source of randomness; ``None`` uses numpy's global RNG.

    Call
    ----
    ``transform(image, mask) -> (float32 (3, ch, cw), int32 (ch, cw))``; ``image`` uint8 HxWx3
    (or anything :func:`load_image` accepts), ``mask`` HxW integers.
    """

    def __init__(self, base_size=520, crop_size=480, scale_range=(0.5, 2.0), flip=True, blur=False,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, ignore_index=255, scale_side='short', rng=None):
        if scale_side not in ('short', 'long'):
            raise ValueError("scale_side must be 'short' or 'long', got %r" % (scale_side,))
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError('scale_range must satisfy 0 < lo <= hi, got %s' % (scale_range,))
        self.base_size = int(base_size)
        self.crop_size = _pair(crop_size, 'crop_size')
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.flip = flip
        self.blur = blur
        self.mean, self.std = tuple(mean), tuple(std)
        self.ignore_index = ignore_index
        self.scale_side = scale_side
        self.rng = rng
        self._owner_pid = os.getpid()
        self._worker_rng = None

    def _random_state(self):
        if self.rng is not None:
            return self.rng
        if os.getpid() == self._owner_pid:
            return np.random
        if self._worker_rng is None or self._worker_rng[0] != os.getpid():
            # A forked worker: decorrelate it from its siblings (see module docstring).
            inherited = np.random.randint(0, 2 ** 31)
            self._worker_rng = (os.getpid(), np.random.RandomState(
                np.random.SeedSequence([inherited, os.getpid()]).generate_state(1)[0]))
        return self._worker_rng[1]

    def __call__(self, image, mask):
        rng = self._random_state()
        image = load_image(image)
        mask = _as_mask(mask)
        _check_pair(image, mask)
        crop_h, crop_w = self.crop_size
        # 1. scale
        h, w = mask.shape
        target = int(round(self.base_size * rng.uniform(*self.scale_range)))
        ref = min(h, w) if self.scale_side == 'short' else max(h, w)
        new_h, new_w = max(1, int(round(h * target / ref))), max(1, int(round(w * target / ref)))
        image = _resize_image(image, new_h, new_w)
        mask = _resize_mask(mask, new_h, new_w)
        # 2. pad bottom/right
        pad_h, pad_w = max(crop_h - new_h, 0), max(crop_w - new_w, 0)
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=0)
            mask = np.pad(mask, ((0, pad_h), (0, pad_w)), constant_values=self.ignore_index)
        # 3. random crop
        y0 = rng.randint(0, mask.shape[0] - crop_h + 1)
        x0 = rng.randint(0, mask.shape[1] - crop_w + 1)
        image = image[y0:y0 + crop_h, x0:x0 + crop_w]
        mask = mask[y0:y0 + crop_h, x0:x0 + crop_w]
        # 4. flip
        if self.flip and rng.rand() < 0.5:
            image = image[:, ::-1]
            mask = mask[:, ::-1]
        # 5. blur (image only)
        if self.blur and rng.rand() < 0.5:
            radius = rng.uniform(0.0, 1.0)
            image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).filter(
                ImageFilter.GaussianBlur(radius=radius)))
        # 6. normalise
        return normalize_image(image, self.mean, self.std), np.ascontiguousarray(mask, dtype=np.int32)

    def __repr__(self):
        return ('SegmentationTrainTransform(base_size=%d, crop_size=%s, scale_range=%s, flip=%s, blur=%s, '
                'scale_side=%r, ignore_index=%s)' % (self.base_size, self.crop_size, self.scale_range,
                                                     self.flip, self.blur, self.scale_side, self.ignore_index))


class SegmentationValTransform(object):
    """Validation during training: short side -> crop size, centre crop, normalise (no randomness).

    Parameters
    ----------
    crop_size : int or (int, int), default 480
        Output size. For a non-square crop the image is scaled so that it covers the crop.
    mean, std : sequence of 3 floats, default ImageNet

    Call
    ----
    ``transform(image, mask) -> (float32 (3, ch, cw), int32 (ch, cw))``; ``mask`` may be None.
    """

    def __init__(self, crop_size=480, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.crop_size = _pair(crop_size, 'crop_size')
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image, mask=None):
        image = load_image(image)
        mask = _as_mask(mask) if mask is not None else None
        _check_pair(image, mask)
        crop_h, crop_w = self.crop_size
        h, w = image.shape[:2]
        scale = max(crop_h / float(h), crop_w / float(w))
        new_h, new_w = max(crop_h, int(round(h * scale))), max(crop_w, int(round(w * scale)))
        image = _resize_image(image, new_h, new_w)
        y0, x0 = (new_h - crop_h) // 2, (new_w - crop_w) // 2
        image = image[y0:y0 + crop_h, x0:x0 + crop_w]
        if mask is not None:
            mask = np.ascontiguousarray(_resize_mask(mask, new_h, new_w)[y0:y0 + crop_h, x0:x0 + crop_w])
        return normalize_image(image, self.mean, self.std), mask

    def __repr__(self):
        return 'SegmentationValTransform(crop_size=%s)' % (self.crop_size,)


class SegmentationTestValTransform(object):
    """Full-image evaluation ("testval"): the image is only normalised, the mask left untouched.

    Call
    ----
    ``transform(image, mask) -> (float32 (3, H, W), int32 (H, W))``; ``mask`` may be None.
    Batches of these have different sizes: use batch size 1 or :func:`pad_batchify`.
    """

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image, mask=None):
        image = load_image(image)
        mask = _as_mask(mask) if mask is not None else None
        _check_pair(image, mask)
        return normalize_image(image, self.mean, self.std), mask

    def __repr__(self):
        return 'SegmentationTestValTransform()'


def _spatial_axes(image, mask_shape):
    """(row axis, col axis) of an image: CHW when its last two dims match the mask, HWC when its
    first two do; without a mask, float images are taken as CHW (transformed), others as HWC."""
    if image.ndim == 2:
        return 0, 1
    if mask_shape is not None:
        if tuple(image.shape[-2:]) == tuple(mask_shape):
            return image.ndim - 2, image.ndim - 1
        if tuple(image.shape[:2]) == tuple(mask_shape):
            return 0, 1
        raise ValueError('image of shape %s does not match its mask of shape %s' % (image.shape, mask_shape))
    return (1, 2) if np.issubdtype(image.dtype, np.floating) else (0, 1)


def pad_batchify(samples, image_pad=0.0, mask_pad=255):
    """Batch samples of different sizes by padding them bottom/right to the largest H and W.

    Parameters
    ----------
    samples : list
        ``(image, mask)`` pairs or bare images; images CHW (transformed) or HWC, masks HxW.
        numpy arrays or NDArrays.
    image_pad : float, default 0.0
        Value for padded image pixels (0 = the mean colour after normalisation).
    mask_pad : int, default 255
        Value for padded mask pixels: the ignore label, so padding is never scored or trained.

    Returns
    -------
    NDArray or (NDArray, NDArray)
        The stacked images (and masks, int32).
    """
    import mxnet as mx

    def host(x):
        return x.asnumpy() if hasattr(x, 'asnumpy') else np.asarray(x)

    paired = isinstance(samples[0], (tuple, list))
    images = [host(s[0] if paired else s) for s in samples]
    masks = [host(s[1]) for s in samples] if paired else None
    axes = [_spatial_axes(img, masks[i].shape if paired else None) for i, img in enumerate(images)]
    max_h = max(img.shape[a[0]] for img, a in zip(images, axes))
    max_w = max(img.shape[a[1]] for img, a in zip(images, axes))

    def pad(arr, rows_axis, cols_axis, value):
        widths = [(0, 0)] * arr.ndim
        widths[rows_axis] = (0, max_h - arr.shape[rows_axis])
        widths[cols_axis] = (0, max_w - arr.shape[cols_axis])
        return np.pad(arr, widths, constant_values=value)

    batch_images = mx.nd.array(np.stack([pad(img, a[0], a[1], image_pad) for img, a in zip(images, axes)]),
                               dtype=images[0].dtype)
    if not paired:
        return batch_images
    batch_masks = mx.nd.array(np.stack([pad(m.astype(np.int32), 0, 1, mask_pad) for m in masks]), dtype='int32')
    return batch_images, batch_masks
