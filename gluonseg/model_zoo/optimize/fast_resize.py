"""The final ``BilinearResize2D`` of a segmentation graph, computed faster on the CPU for
inference (needs numba).

Every gluonseg model ends with ``BilinearResize2D(logits, like=input, align_corners=True)``
(:func:`~gluonseg.model_zoo.segbase.resize_like`). MXNet 1.9.1's CPU kernel reads and weighs
four input pixels for every output pixel: on Fast-SCNN at 1024x2048 it upsamples 19 channels
8x, 40 M output values, and takes more time than all the convolutions of the int8 graph.
Here the resize is separable: each input row a block of output rows reads is interpolated
along the width once (kept in a two-row buffer), and each output row is the weighted sum of
two such rows, contiguous and vectorized. The positions and weights are MXNet's (``src =
dst * (in - 1) / (out - 1)`` in float32, two taps per axis, the second one clamped at the
border) and the sums are in its order, ``h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d)``,
so the values equal MXNet's (bit-identical in the tests). Blocks of rows of every channel are
split between threads (the kernel releases the GIL).

:class:`FinalResize` runs an optimized graph up to its final resize and resizes by the
kernel into memory that the returned NDArray then holds (no copy of the 160 MB output).
:func:`bilinear_resize` falls back to ``BilinearResize2D`` when numba is not installed
(``pip install gluonseg[fast]``) or the array is not float32 on the CPU.
"""
import json

import mxnet as mx
import numpy as np

from ...utils.mxnet_compat import host_view
from ...utils.numba_support import compile_kernel, numba, run_in_threads

__all__ = ['available', 'bilinear_resize', 'FinalResize']

# Output rows per task: enough tasks to balance the threads on one or a few channels, few
# enough that each reuses its interpolated input rows (at 8x upsampling, 4 rows per 32).
_ROWS_PER_TASK = 32
# Operators that pass ``like`` through to the resize (resize_like's BlockGrad).
_PASS_THROUGH = ('BlockGrad', 'stop_gradient', 'identity', '_copy')


def available():
    """Whether the numba kernel can be used (numba is importable)."""
    return numba is not None


def _resize_tasks(src, dst, row_taps, row_weights, col_taps, col_weights, tasks):
    """Resize the planes ``src`` (P, H, W) into ``dst`` (P, H', W') for the ``tasks``: task
    ``t`` is output rows ``[k * _ROWS_PER_TASK, (k + 1) * _ROWS_PER_TASK)`` of plane ``p``
    for ``p, k = divmod(t, row blocks)``. Output row ``i`` is ``row_weights[i, 0]`` times
    input row ``row_taps[i, 0]`` plus ``row_weights[i, 1]`` times row ``row_taps[i, 1]``, each
    input row first interpolated along the width the same way (``col_*``)."""
    out_h, out_w = dst.shape[1], dst.shape[2]
    blocks = (out_h + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK
    # Input rows interpolated along the width, input row r in slot r % 2: the two taps of
    # an output row are one row or two consecutive ones, and rows only move down.
    across = np.empty((2, out_w), np.float32)
    held = np.empty(2, np.int64)
    for task in tasks:
        plane, block = task // blocks, task % blocks
        held[:] = -1
        for i in range(block * _ROWS_PER_TASK, min((block + 1) * _ROWS_PER_TASK, out_h)):
            for tap in range(2):
                row = row_taps[i, tap]
                if held[row % 2] != row:
                    line, target = src[plane, row], across[row % 2]
                    for j in range(out_w):
                        target[j] = (col_weights[j, 0] * line[col_taps[j, 0]] +
                                     col_weights[j, 1] * line[col_taps[j, 1]])
                    held[row % 2] = row
            upper, lower = across[row_taps[i, 0] % 2], across[row_taps[i, 1] % 2]
            w_upper, w_lower = row_weights[i, 0], row_weights[i, 1]
            out = dst[plane, i]
            for j in range(out_w):
                out[j] = w_upper * upper[j] + w_lower * lower[j]


_resize_tasks = compile_kernel(_resize_tasks)


def _taps(size_in, size_out):
    """``(taps, weights)``, (size_out, 2) int64 and float32: the two input positions each
    output position reads and their weights, as ``BilinearResize2D(align_corners=True)``
    computes them (float32; the second tap is the first at the last input position)."""
    scale = (np.float32(size_in - 1) / np.float32(size_out - 1) if size_out > 1
             else np.float32(0))
    source = scale * np.arange(size_out, dtype=np.float32)
    first = source.astype(np.int64)
    upper = source - first.astype(np.float32)
    taps = np.stack([first, np.minimum(first + 1, size_in - 1)], axis=1)
    weights = np.stack([np.float32(1) - upper, upper], axis=1)
    return taps, weights


def bilinear_resize(data, height, width):
    """``mx.nd.contrib.BilinearResize2D(data, height=height, width=width,
    align_corners=True)``, by the numba kernel when it can run.

    Parameters
    ----------
    data : NDArray (N, C, H, W)
    height, width : int
        The output size, at least 1.

    Returns
    -------
    NDArray (N, C, height, width) on ``data``'s device.
    """
    if height < 1 or width < 1:
        raise ValueError('bilinear_resize: the output size must be positive, not %dx%d'
                         % (height, width))
    if numba is None or data.context.device_type != 'cpu' or data.dtype != np.float32:
        return mx.nd.contrib.BilinearResize2D(data, height=height, width=width,
                                              align_corners=True)
    batch, channels, in_h, in_w = data.shape
    data.wait_to_read()
    src = host_view(data).reshape((batch * channels, in_h, in_w))
    # NumPy asks the kernel for huge pages for a large array, MXNet does not: faulting in
    # 160 MB of 4 KB pages on every call would cost more than the resize. The NDArray
    # returned holds this memory (no copy).
    resized = np.empty((batch, channels, height, width), np.float32)
    dst = resized.reshape((batch * channels, height, width))
    if (in_h, in_w) == (height, width):
        dst[...] = src  # what BilinearResize2D does too
        return mx.nd.from_numpy(resized, zero_copy=True)
    row_taps, row_weights = _taps(in_h, height)
    col_taps, col_weights = _taps(in_w, width)
    tasks = np.arange(batch * channels * -(-height // _ROWS_PER_TASK))
    args = (src, dst, row_taps, row_weights, col_taps, col_weights)
    run_in_threads(lambda part: _resize_tasks(*args, part), tasks)
    return mx.nd.from_numpy(resized, zero_copy=True)


class FinalResize(object):
    """A graph ending in ``BilinearResize2D(x, like=input, align_corners=True)``, run as the
    graph up to ``x`` (a ``CachedOp`` over the same parameters) and :func:`bilinear_resize`
    to the input's size. Make one with :meth:`split`; call it with the input NDArray."""

    def __init__(self, features, data_name, params, flags):
        self._inputs = [None if name == data_name else params[name]
                        for name in features.list_inputs()]
        data_index = self._inputs.index(None)
        param_indices = [i for i in range(len(self._inputs)) if i != data_index]
        self._op = mx.nd.CachedOp(features, [('data_indices', [data_index]),
                                             ('param_indices', param_indices)] + list(flags))

    @classmethod
    def split(cls, symbol, data_name, params, flags=()):
        """A :class:`FinalResize` for ``symbol``, or None when numba is not installed or the
        graph does not end in such a resize of float32 values.

        Parameters
        ----------
        symbol : Symbol
            The graph, one input named ``data_name``.
        data_name : str
        params : dict or ParameterDict
            ``{name: Parameter}`` holding every other input of the graph.
        flags : sequence of (str, value)
            ``CachedOp`` flags, e.g. ``[('static_alloc', True)]``.
        """
        if numba is None or symbol.list_inputs().count(data_name) != 1:
            return None
        graph = json.loads(symbol.tojson(remove_amp_cast=False))
        nodes, heads = graph['nodes'], graph['heads']
        head = nodes[heads[0][0]]
        attrs = head.get('attrs', {})
        if (len(heads) != 1 or head['op'] != '_contrib_BilinearResize2D'
                or attrs.get('mode') != 'like'
                or attrs.get('align_corners', '').lower() not in ('true', '1')):
            return None
        like = nodes[head['inputs'][1][0]]
        while like['op'] in _PASS_THROUGH:
            like = nodes[like['inputs'][0][0]]
        if like['op'] != 'null' or like['name'] != data_name:
            return None
        features = symbol.get_children()[0]
        _, (dtype,), _ = features.infer_type(**{data_name: np.float32})
        if dtype != np.float32 or any(name != data_name and name not in params
                                      for name in features.list_inputs()):
            return None
        return cls(features, data_name, params, flags)

    def __call__(self, x):
        """The graph's output for ``x`` (N, 3, H, W): (N, C, H, W)."""
        features = self._op(*[x if param is None else param.data(x.context)
                              for param in self._inputs])
        return bilinear_resize(features, x.shape[2], x.shape[3])
