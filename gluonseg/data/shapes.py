"""Synthetic shapes: a file-free segmentation dataset for tests, demos and smoke-training.

Each scene is a textured, noisy background (smooth colour blotches, sometimes stripes, pixel
noise) with 1 to ``max_shapes`` filled circles, squares and triangles of random colour and size,
possibly overlapping. The class is the *shape*; colours are drawn independently of it, so a
model has to look at outlines and corners. Scenes are generated on the fly, deterministically
from ``(seed, split, index)``, in about a millisecond for 128x128; different splits get
different scenes.

To keep the task learnable by a small network in minutes: edges are hard (the mask is exact),
every shape contrasts with the background and with the other shapes' colours, a shape stays
entirely inside the image, a placement is redrawn if it would hide more than 30% of an earlier
shape, and by default shapes are upright and large (25-45% of the image side). Rotation
(``max_rotation``) and smaller shapes make the task much harder (see
:class:`ShapesSegmentation`).
"""
import functools
import zlib

import mxnet as mx
import numpy as np

from .base import NamedClassesMixin, SegmentationDataset

__all__ = ['SHAPE_CLASSES', 'ShapesSegmentation', 'ShapesInstance', 'generate_scene']

SHAPE_CLASSES = ('background', 'circle', 'square', 'triangle')
_NUM_SHAPES = len(SHAPE_CLASSES) - 1
_DEFAULT_LENGTH = {'train': 2000}
_OTHER_SPLIT_LENGTH = 200

# Half-extent (circumradius) and linear scale of each shape per unit "size", chosen so that the
# three shapes of one size have similar areas (circle 0.79, square 0.72, triangle 0.62 x size^2):
# size alone does not reveal the class.
_CIRCLE, _SQUARE, _TRIANGLE = 0, 1, 2
_SQUARE_SIDE = 0.85
_TRIANGLE_SIDE = 1.2
_HALF_EXTENT = (0.5, _SQUARE_SIDE / np.sqrt(2.0), _TRIANGLE_SIDE / np.sqrt(3.0))

_MIN_BG_CONTRAST = 150     # L1 distance (sum over RGB, 0..765) between shape and background colour
_MIN_SHAPE_CONTRAST = 110  # ... and between two shapes' colours
_MAX_HIDDEN = 0.3          # a later shape may cover at most this fraction of an earlier one
_PLACEMENT_TRIES = 8


@functools.lru_cache(maxsize=16)
def _grid(height, width):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return yy + 0.5, xx + 0.5  # pixel centres


@functools.lru_cache(maxsize=16)
def _upsample_matrix(out_len, in_len):
    """(out_len, in_len) bilinear interpolation weights, for smooth low-frequency textures."""
    pos = (np.arange(out_len) + 0.5) * in_len / out_len - 0.5
    pos = np.clip(pos, 0, in_len - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, in_len - 1)
    frac = (pos - lo).astype(np.float32)
    weights = np.zeros((out_len, in_len), dtype=np.float32)
    weights[np.arange(out_len), lo] += 1 - frac
    weights[np.arange(out_len), hi] += frac
    return weights


def _smooth_noise(rng, height, width, cells, amplitude):
    """HxWx3 float32 smooth random field in [-amplitude, amplitude] from a cells x cells grid."""
    coarse = rng.uniform(-amplitude, amplitude, size=(cells, cells, 3)).astype(np.float32)
    rows = np.tensordot(_upsample_matrix(height, cells), coarse, axes=(1, 0))  # (H, cells, 3)
    return np.matmul(_upsample_matrix(width, cells)[None], rows)               # (H, W, 3)


def _background(rng, height, width, base_colour):
    yy, xx = _grid(height, width)
    image = np.empty((height, width, 3), dtype=np.float32)
    image[...] = base_colour
    image += _smooth_noise(rng, height, width, cells=int(rng.integers(3, 7)), amplitude=30.0)
    if rng.random() < 0.5:  # stripes of random direction and period
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(0.08, 0.3) * min(height, width)
        phase = (xx * np.cos(theta) + yy * np.sin(theta)) * (2 * np.pi / period)
        image += (rng.uniform(8, 20) * np.sin(phase))[..., None] * rng.uniform(0.5, 1.0, size=3).astype(np.float32)
    return image


def _pick_colour(rng, avoid, min_distances):
    """A random RGB colour at L1 distance >= min_distances[i] from each avoid[i] (best effort)."""
    candidates = rng.integers(0, 256, size=(32, 3)).astype(np.float32)
    if len(avoid):
        dist = np.abs(candidates[:, None, :] - np.asarray(avoid, np.float32)[None]).sum(-1)
        margin = (dist - np.asarray(min_distances, np.float32)[None]).min(axis=1)
        ok = np.flatnonzero(margin >= 0)
        return candidates[ok[0]] if ok.size else candidates[np.argmax(margin)]
    return candidates[0]


def _shape_mask(kind, cy, cx, size, theta, yy, xx):
    """Boolean mask of one shape on the (sub)grid yy, xx."""
    dy, dx = yy - cy, xx - cx
    if kind == _CIRCLE:
        return dx * dx + dy * dy <= (0.5 * size) ** 2
    cos, sin = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    if kind == _SQUARE:
        half = 0.5 * _SQUARE_SIDE * size
        return (np.abs(dx * cos + dy * sin) <= half) & (np.abs(dy * cos - dx * sin) <= half)
    # Equilateral triangle: inside all three edges, each at the inradius (side / (2*sqrt(3))) from
    # the centre along directions theta+90, +210, +330 degrees (y points down: theta=0 is
    # apex up, flat base down).
    inradius = _TRIANGLE_SIDE * size / (2 * np.sqrt(3.0))
    inside = None
    for k in range(3):
        a = theta + np.pi / 2 + k * 2 * np.pi / 3
        edge = dx * np.float32(np.cos(a)) + dy * np.float32(np.sin(a)) <= inradius
        inside = edge if inside is None else inside & edge
    return inside


def generate_scene(rng, height=128, width=128, max_shapes=3, size_range=(0.25, 0.45), max_rotation=0.0,
                   max_hidden=_MAX_HIDDEN):
    """Draw one scene.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness (the scene is a pure function of its state).
    height, width : int
        Image size.
    max_shapes : int
        Scenes hold 1..max_shapes shapes (fewer if placements are rejected for too much occlusion).
    size_range : (float, float)
        Shape size (about its diameter) as a fraction of ``min(height, width)``.
    max_rotation : float
        Squares and triangles are rotated by U(-max_rotation, max_rotation) degrees; 0 keeps
        squares axis-aligned and triangles apex-up. 180 gives every orientation (a much harder
        task: see :class:`ShapesSegmentation`).
    max_hidden : float
        A placement that would hide more than this fraction of an earlier shape is redrawn.

    Returns
    -------
    image : numpy.ndarray
        uint8 (H, W, 3) RGB.
    mask : numpy.ndarray
        int32 (H, W) semantic mask: 0 background, 1 circle, 2 square, 3 triangle.
    class_ids : numpy.ndarray
        int32 (N,) shape class of each instance, 0 circle, 1 square, 2 triangle (= mask id - 1).
    instance_masks : numpy.ndarray
        bool (N, H, W) visible part of each instance, in drawing order (later ones occlude earlier ones).
    """
    yy, xx = _grid(height, width)
    side = min(height, width)
    bg_colour = rng.integers(0, 256, size=3).astype(np.float32)
    image = _background(rng, height, width, bg_colour)
    mask = np.zeros((height, width), dtype=np.int32)
    visible, visible_area, full_area, class_ids, colours = [], [], [], [], []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        kind = int(rng.integers(0, _NUM_SHAPES))
        for _attempt in range(_PLACEMENT_TRIES):
            size = rng.uniform(size_range[0], size_range[1]) * side
            extent = _HALF_EXTENT[kind] * size + 1.0
            cy = rng.uniform(extent, height - extent) if height > 2 * extent else height / 2.0
            cx = rng.uniform(extent, width - extent) if width > 2 * extent else width / 2.0
            theta = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
            y0, y1 = max(int(cy - extent), 0), min(int(np.ceil(cy + extent)) + 1, height)
            x0, x1 = max(int(cx - extent), 0), min(int(np.ceil(cx + extent)) + 1, width)
            box = (slice(y0, y1), slice(x0, x1))
            region = _shape_mask(kind, cy, cx, size, theta, yy[box], xx[box])
            area = int(region.sum())
            if not area:
                continue
            # Reject if an earlier shape would keep less than half of its own area visible.
            hidden = [int((vis[box] & region).sum()) for vis in visible]
            if all(v - h >= (1 - max_hidden) * f for v, h, f in zip(visible_area, hidden, full_area)):
                break
        else:
            continue
        colour = _pick_colour(rng, [bg_colour] + colours,
                              [_MIN_BG_CONTRAST] + [_MIN_SHAPE_CONTRAST] * len(colours))
        # Fill: the colour plus a gentle gradient of its own, so shapes are not perfectly flat.
        gradient = (yy[box] - cy) * rng.uniform(-0.6, 0.6) + (xx[box] - cx) * rng.uniform(-0.6, 0.6)
        fill = colour + gradient[..., None]
        image[box][region] = fill[region]
        for n, vis in enumerate(visible):
            vis[box] &= ~region
            visible_area[n] -= hidden[n]
        shape = np.zeros((height, width), dtype=bool)
        shape[box] = region
        visible.append(shape)
        visible_area.append(area)
        full_area.append(area)
        class_ids.append(kind)
        colours.append(colour)
        mask[box][region] = kind + 1
    # Pixel noise, uniform (3x cheaper to draw than Gaussian), standard deviation 3..9.
    noise = rng.random(size=(height, width, 3), dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= np.float32(rng.uniform(3, 9) * np.sqrt(12.0))
    image += noise
    image = np.clip(image, 0, 255, out=image).astype(np.uint8)
    instance_masks = np.stack(visible) if visible else np.zeros((0, height, width), dtype=bool)
    return image, mask, np.asarray(class_ids, dtype=np.int32), instance_masks


class _ShapesBase(object):
    """Seeding and sizing shared by the semantic and instance variants."""

    def _init_shapes(self, split, length, size, seed, max_shapes, size_range, max_rotation):
        if isinstance(size, int):
            size = (size, size)
        self.height, self.width = int(size[0]), int(size[1])
        if min(self.height, self.width) < 16:
            raise ValueError('size must be at least 16x16 pixels, got %s' % (size,))
        if not 0 < size_range[0] <= size_range[1] <= 0.9:
            raise ValueError('size_range must satisfy 0 < lo <= hi <= 0.9, got %s' % (size_range,))
        self.length = int(length if length is not None else _DEFAULT_LENGTH.get(split, _OTHER_SPLIT_LENGTH))
        self.seed = int(seed)
        self.max_shapes = int(max_shapes)
        self.size_range = tuple(size_range)
        self.max_rotation = float(max_rotation)
        # crc32 (unlike hash()) is stable across processes, so DataLoader workers agree.
        self._split_key = zlib.crc32(str(split).encode('utf-8'))

    def _scene(self, index):
        if not -self.length <= index < self.length:
            raise IndexError('index %d out of range for %s of length %d' % (index, type(self).__name__, self.length))
        rng = np.random.default_rng([self.seed, self._split_key, int(index) % self.length])
        return generate_scene(rng, self.height, self.width, self.max_shapes, self.size_range, self.max_rotation)


class ShapesSegmentation(_ShapesBase, SegmentationDataset):
    """Synthetic semantic segmentation: background, circle, square, triangle (4 classes).

    Parameters
    ----------
    split : str, default 'train'
        Any name; each name gives its own stream of scenes (``'train'``, ``'val'``, ``'test'`` ...).
    length : int, optional
        Number of scenes; default 2000 for ``'train'``, 200 otherwise.
    size : (int, int) or int, default (128, 128)
        Image height and width.
    seed : int, default 0
        Scene ``i`` of a split is a pure function of ``(seed, split, i)``.
    transform : callable, optional
        Joint ``transform(image, mask) -> (image, mask)``.
    max_shapes : int, default 3
        At most this many shapes per scene (at least one).
    size_range : (float, float), default (0.25, 0.45)
        Shape size (about its diameter) as a fraction of the shorter image side.
    max_rotation : float, default 0
        Random rotation of squares and triangles, in degrees (up to 180).

    Notes
    -----
    ``dataset[i]`` is ``(image, mask)``: uint8 HxWx3 RGB and int32 HxW with ids 0..3. There is no
    ignore label in the generated masks.

    Learnability, measured with a ~170K-parameter FCN (stride-8 dilated encoder, one skip) trained
    from scratch with Adam, batch 16, at 64x64 on one CPU core for 4 minutes (~700 iterations),
    mIoU on 200 ``'val'`` scenes: 0.89 with the defaults; 0.45 with ``max_rotation=180``,
    ``max_shapes=4``, ``size_range=(0.15, 0.4)``.
    """

    CLASSES = SHAPE_CLASSES

    def __init__(self, split='train', length=None, size=(128, 128), seed=0, transform=None,
                 max_shapes=3, size_range=(0.25, 0.45), max_rotation=0.0):
        SegmentationDataset.__init__(self, root=None, split=split, transform=transform)
        self._init_shapes(split, length, size, seed, max_shapes, size_range, max_rotation)
        self.ids = list(range(self.length))

    def _load(self, index):
        image, mask, _, _ = self._scene(index)
        return image, mask, 'shapes %s[%d]' % (self.split, index)

    def __repr__(self):
        return 'ShapesSegmentation(split=%r, length=%d, size=(%d, %d), seed=%d)' % (
            self.split, self.length, self.height, self.width, self.seed)


class ShapesInstance(_ShapesBase, NamedClassesMixin, mx.gluon.data.Dataset):
    """Synthetic instance segmentation on the same scenes as :class:`ShapesSegmentation`.

    Same parameters as :class:`ShapesSegmentation`; with equal arguments, scene ``i`` is the same
    image in both datasets.

    ``dataset[i]`` is ``(image, boxes, class_ids, masks)``:

    - ``image``: uint8 (H, W, 3) RGB;
    - ``boxes``: float32 (N, 4) tight boxes ``(x1, y1, x2, y2)`` of the *visible* pixels, in pixel
      indices with inclusive ends (x2 = last column covered), GluonCV's COCO-loader convention;
    - ``class_ids``: int32 (N,), 0 circle, 1 square, 2 triangle (semantic id minus 1);
    - ``masks``: uint8 (N, H, W) visible part of each instance (later instances occlude earlier
      ones), so ``max over n of (masks[n] * (class_ids[n] + 1))`` is the semantic mask.

    With a ``transform``, it is called as ``transform(image, boxes, class_ids, masks)`` and its
    result returned.
    """

    CLASSES = SHAPE_CLASSES[1:]

    def __init__(self, split='train', length=None, size=(128, 128), seed=0, transform=None,
                 max_shapes=3, size_range=(0.25, 0.45), max_rotation=0.0):
        mx.gluon.data.Dataset.__init__(self)
        self._init_shapes(split, length, size, seed, max_shapes, size_range, max_rotation)
        self.split = split
        self.transform = transform

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        image, _, class_ids, masks = self._scene(index)
        boxes = np.zeros((len(masks), 4), dtype=np.float32)
        for n, instance in enumerate(masks):
            rows = np.flatnonzero(instance.any(axis=1))
            cols = np.flatnonzero(instance.any(axis=0))
            boxes[n] = cols[0], rows[0], cols[-1], rows[-1]
        masks = masks.astype(np.uint8)
        if self.transform is not None:
            return self.transform(image, boxes, class_ids, masks)
        return image, boxes, class_ids, masks

    def __repr__(self):
        return 'ShapesInstance(split=%r, length=%d, size=(%d, %d), seed=%d)' % (
            self.split, self.length, self.height, self.width, self.seed)
