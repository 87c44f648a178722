"""Anchor boxes on a regular grid, in Detectron's "reference window" convention.

The reference window of a feature map with stride s is ``(0, 0, s - 1, s - 1)``, centred at
``((s - 1) / 2, (s - 1) / 2)``. For each aspect ratio r (outer loop) the window's area is
kept: width ``round(sqrt(s * s / r))``, height ``round(width * r)``; then for each anchor size
(inner loop) both sides are multiplied by ``size / s`` around the same centre, and the box is
``centre -/+ (side - 1) / 2``. The anchor of cell (i, j) is that box shifted by
``(j * s, i * s)``. With stride 16, size 32 and ratio 1 this gives Detectron's
(-8, -8, 23, 23) from the (0, 0, 15, 15) window; on FPN level P2 (stride 4) the size-32
anchors come from a 4x4 window centred at (1.5, 1.5), so their rounding differs.

The grid is precomputed for ``alloc_size`` cells and stored in the network as a constant
parameter (it is part of GluonCV's weight files), then cropped to each feature map.
Everything is computed in float64 with plain NumPy types (no ``np.float``), so the values
are the same with any NumPy version.
"""
import mxnet as mx
import numpy as np
from mxnet.gluon import nn

__all__ = ['reference_anchors', 'grid_anchors', 'AnchorGenerator']


def reference_anchors(stride=16, sizes=(32, 64, 128, 256, 512), ratios=(0.5, 1, 2)):
    """The anchors of the cell at the origin, (len(ratios) * len(sizes), 4) float64 corners.

    Parameters
    ----------
    stride : int
        Side of the reference window ``(0, 0, stride - 1, stride - 1)``.
    sizes : sequence of float
        Anchor sides (square root of the area, before rounding); inner loop.
    ratios : sequence of float
        Height / width ratios; outer loop.
    """
    centre = (stride - 1) * 0.5
    boxes = []
    for ratio in ratios:
        width = np.round(np.sqrt(stride * stride / float(ratio)))
        height = np.round(width * ratio)
        for size in sizes:
            scale = float(size) / stride
            half_w = (width * scale - 1) * 0.5
            half_h = (height * scale - 1) * 0.5
            boxes.append([centre - half_w, centre - half_h, centre + half_w, centre + half_h])
    return np.array(boxes, dtype=np.float64)


def grid_anchors(stride, alloc_size, sizes=(32, 64, 128, 256, 512), ratios=(0.5, 1, 2)):
    """Anchors of every cell of an ``alloc_size`` grid, shape (1, 1, H, W, A * 4) float32.

    ``[0, 0, i, j, 4 * a:4 * a + 4]`` is anchor ``a`` of cell (row i, column j), as
    x1, y1, x2, y2 in input pixels.
    """
    height, width = alloc_size
    base = reference_anchors(stride, sizes, ratios)
    shift_x, shift_y = np.meshgrid(np.arange(width, dtype=np.float64) * stride,
                                   np.arange(height, dtype=np.float64) * stride)
    shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=-1)  # (H, W, 4)
    anchors = shifts[:, :, None, :] + base[None, None, :, :]  # (H, W, A, 4)
    return anchors.reshape(1, 1, height, width, -1).astype(np.float32)


class _ArrayInit(mx.init.Initializer):
    """Sets a parameter to a fixed array. Gluon's ``get_constant`` would register a new
    initializer class per call in MXNet's global registry, which keeps the array for the life
    of the process (about 10 MB per FPN model built); this one lives with its parameter."""

    def __init__(self, value):
        super().__init__()
        self._value = value

    def _init_weight(self, _, arr):
        arr[:] = self._value


class AnchorGenerator(nn.HybridBlock):
    """The anchors of a feature map, (1, H * W * A, 4): cells row-major, then the A anchors
    of a cell (the order of the RPN head's outputs).

    The precomputed grid is the constant parameter ``anchors`` (1, 1, alloc_h, alloc_w,
    A * 4); feature maps larger than ``alloc_size`` are refused (with stride 16 and alloc
    128 that is an input side above 2048 pixels).

    Parameters
    ----------
    stride : int
        Input pixels per feature-map cell.
    alloc_size : (int, int)
        Grid size to precompute.
    base_size : int
        Anchor sizes are ``base_size * scales`` (16 * (2, 4, 8, 16, 32) = 32 ... 512).
    ratios, scales : sequence of float
        Height / width ratios, and size multipliers.
    """

    def __init__(self, stride, alloc_size=(128, 128), base_size=16, ratios=(0.5, 1, 2),
                 scales=(2, 4, 8, 16, 32), **kwargs):
        super().__init__(**kwargs)
        self.stride = stride
        self.alloc_size = tuple(alloc_size)
        self.num_anchors = len(ratios) * len(scales)
        grid = grid_anchors(stride, alloc_size, [base_size * s for s in scales], ratios)
        with self.name_scope():
            self.anchors = self.params.get('anchors', shape=grid.shape, init=_ArrayInit(grid),
                                           grad_req='null')

    def hybrid_forward(self, F, x, anchors):
        if not hasattr(x, 'list_outputs'):  # imperative: say what is wrong instead of crashing
            height, width = x.shape[2:]
            if height > self.alloc_size[0] or width > self.alloc_size[1]:
                raise ValueError(
                    'A %dx%d feature map (stride %d) exceeds the %dx%d precomputed anchor grid: '
                    'the input is too large (at most %dx%d pixels); resize it first'
                    % (height, width, self.stride, self.alloc_size[0], self.alloc_size[1],
                       self.alloc_size[0] * self.stride, self.alloc_size[1] * self.stride))
        cropped = F.slice_like(anchors, x, axes=(2, 3))
        return cropped.reshape((1, -1, 4))
