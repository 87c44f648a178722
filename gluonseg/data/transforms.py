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
import contextlib
import os

import numpy as np
from PIL import Image, ImageFilter, ImageOps

__all__ = ['IMAGENET_MEAN', 'IMAGENET_STD', 'load_image', 'ImageReadError', 'open_image_file',
           'image_file_size', 'exif_orientation', 'normalize_image', 'short_within_size',
           'SegmentationTrainTransform', 'SegmentationValTransform', 'SegmentationTestValTransform',
           'pad_batchify']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(x):
    """Return ``x`` as a uint8 HxWx3 RGB numpy array, upright.

    The one reader of pictures in gluonseg: the datasets, the transforms, ``net.predict``,
    ``gluonseg predict`` and ``gluonseg eval`` all read images through it.

    Parameters
    ----------
    x : str, os.PathLike, PIL.Image.Image, numpy.ndarray or mxnet NDArray
        A file path (any format PIL reads) or a PIL image; or an array: HxWx3 RGB (not BGR:
        convert OpenCV images first), HxWx4 RGBA (alpha dropped), HxW or HxWx1 greyscale
        (replicated). Notes say how orientation and pixel values are taken.

    Returns
    -------
    numpy.ndarray
        uint8, shape (H, W, 3), C-contiguous.

    Raises
    ------
    ImageReadError
        The file (or a PIL image's file) cannot be decoded: truncated, damaged, not an image.
        The message names the file and the decoder's reason.
    FileNotFoundError
        No such file.
    TypeError, ValueError
        Float pixels (their scale is ambiguous), values out of range for their type, or an
        unsupported layout; the message names the file or the array's type and the values.

    Notes
    -----
    * **Orientation.** The EXIF orientation tag of a file or PIL image is applied, so the
      array is the picture as image viewers show it: a phone photo stored sideways comes out
      upright, with height and width swapped for a quarter turn. Labels must be drawn on that
      upright picture (as labelme and CVAT draw them); label PNGs are read as stored, so a
      dataset sample whose upright image and label differ in size is an error naming both
      files and both sizes.
    * **Bit depth.** 8-bit images (greyscale, palette, RGB, RGBA, CMYK, ...) are converted to
      RGB by PIL; 16-bit RGB files are read by PIL at 8 bits. 16-bit greyscale (PIL modes
      ``I;16*``, numpy ``uint16`` arrays) is scaled by the range of its type,
      ``round(v * 255 / 65535)``: 0..65535 becomes 0..255. PIL's 32-bit integer mode ``I``
      is how PIL holds 16-bit greyscale files, so it is scaled the same way, and a value
      outside 0..65535 is refused. Float images (PIL mode ``F``, float arrays) are refused.
      Arrays of other integer or bool types must hold values in 0..255 and are taken as
      they are.
    """
    if isinstance(x, (str, bytes, os.PathLike)):
        with open_image_file(x) as img:
            return _upright_rgb(img, os.fsdecode(x))
    if isinstance(x, Image.Image):
        source = getattr(x, 'filename', None) or 'the PIL image'
        try:  # an image from Image.open is decoded here, where its errors name no file
            x.load()
            x.getexif()
        except _DECODE_ERRORS as err:
            raise ImageReadError(source, err) from None
        return _upright_rgb(x, source)
    if hasattr(x, 'asnumpy'):
        x = x.asnumpy()
    if not isinstance(x, np.ndarray):
        raise TypeError('load_image expects a path, PIL image or HxWx3 array, got %s' % type(x).__name__)
    source = 'a %s image array' % x.dtype
    if np.issubdtype(x.dtype, np.floating):
        raise TypeError('load_image got %s; convert it to uint8 0..255 first (its scale, 0..1 or '
                        '0..255, is ambiguous)' % source)
    if x.dtype.kind == 'u' and x.dtype.itemsize == 2:  # uint16, either byte order
        x = _scaled_from_16_bits(x, source)
    elif x.dtype != np.uint8:
        if x.size and (x.min() < 0 or x.max() > 255):
            raise ValueError('load_image got %s with values in [%s, %s]; expected 0..255 (or a '
                             'uint16 array for 16-bit pixels)' % (source, x.min(), x.max()))
        x = x.astype(np.uint8)
    return _rgb_layout(x)


# What PIL raises for a file it cannot identify or decode (OSError: truncated or broken data,
# UnidentifiedImageError; SyntaxError, ValueError, EOFError: malformed headers of some formats).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
_OPEN_ERRORS = (FileNotFoundError, IsADirectoryError, PermissionError)  # they name the file
_EXIF_ORIENTATION = 0x0112
_QUARTER_TURNS = (5, 6, 7, 8)  # orientations that swap height and width


class ImageReadError(OSError):
    """An image file that exists but cannot be decoded (truncated, damaged, not an image).

    Attributes
    ----------
    path : str
        The file.
    reason : str
        What the decoder reported, e.g. ``'image file is truncated (2 bytes not processed)'``.
    """

    def __init__(self, path, reason):
        self.path, self.reason = os.fsdecode(path), str(reason)
        super(ImageReadError, self).__init__('cannot read the image %s: %s'
                                             % (self.path, self.reason))

    def __reduce__(self):  # errors of DataLoader worker processes travel pickled
        return type(self), (self.path, self.reason)


@contextlib.contextmanager
def open_image_file(path):
    """``with open_image_file(path) as img``: the decoded PIL image of a file, closed on leaving.

    Raises
    ------
    ImageReadError
        Naming the file, when PIL cannot identify or decode it (a truncated JPEG, say, whose
        bare PIL error ``image file is truncated`` names no file).
    FileNotFoundError, IsADirectoryError, PermissionError
        As ``open`` raises them.
    """
    img = None
    try:
        img = Image.open(path)
        # Decode and parse the EXIF data now: PIL does both lazily, on first use, where its
        # errors name no file.
        img.load()
        img.getexif()
    except _OPEN_ERRORS:
        raise
    except _DECODE_ERRORS as err:
        if img is not None:
            img.close()
        raise ImageReadError(path, err) from None
    with img:
        yield img


def exif_orientation(img):
    """The EXIF orientation of a PIL image: 1 (upright, also when untagged) to 8."""
    orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    return orientation if orientation in range(1, 9) else 1


def image_file_size(path):
    """``(height, width)`` of an image file as :func:`load_image` returns it (after its EXIF
    orientation), from the header alone: the pixels are not decoded.

    Raises
    ------
    ImageReadError
        If PIL cannot identify the file.
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
            turned = exif_orientation(img) in _QUARTER_TURNS
    except _OPEN_ERRORS:
        raise
    except _DECODE_ERRORS as err:
        raise ImageReadError(path, err) from None
    return (width, height) if turned else (height, width)


def _upright_rgb(img, source):
    """uint8 HxWx3 of a decoded PIL image, its EXIF orientation applied."""
    if exif_orientation(img) != 1:
        img = ImageOps.exif_transpose(img)
    if img.mode.startswith('I;16') or img.mode == 'I':
        values = np.asarray(img)
        return _rgb_layout(_scaled_from_16_bits(values, '%s (PIL mode %s)' % (source, img.mode)))
    if img.mode == 'F':
        raise TypeError('%s holds 32-bit float pixels (PIL mode F), whose scale (0..1 or 0..255) is '
                        'ambiguous: save it with 8 or 16 bits per channel' % source)
    return np.asarray(img.convert('RGB'), dtype=np.uint8).copy()


def _scaled_from_16_bits(values, source):
    """0..65535 -> uint8 0..255, rounded."""
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError('%s holds values in [%d, %d]; 16-bit pixels are 0..65535'
                         % (source, values.min(), values.max()))
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _rgb_layout(x):
    """uint8 HxW, HxWx1, HxWx3 or HxWx4 -> C-contiguous HxWx3."""
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


def short_within_size(height, width, short, max_size):
    """``(new_height, new_width)`` with the short side ``short`` unless the long side would
    then exceed ``max_size`` (then the long side is ``max_size``): Mask R-CNN's resize rule
    (:func:`~gluonseg.data.instance_transforms.resize_short_within`), here without MXNet."""
    scale = float(short) / min(height, width)
    if round(scale * max(height, width)) > max_size:
        scale = float(max_size) / max(height, width)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


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
    import mxnet as mx  # lazy: the registry imports this module and must not import MXNet

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
