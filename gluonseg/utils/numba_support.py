"""What the numba CPU kernels (Mask R-CNN's :mod:`~gluonseg.model_zoo.rcnn.fast_roi_align`
and :mod:`~gluonseg.model_zoo.rcnn.fast_nms`, the segmentation models' final resize
:mod:`~gluonseg.model_zoo.optimize.fast_resize`) share: the optional numba import
(``pip install gluonseg[fast]``), how a kernel is compiled, and how its work is split
between threads."""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:
    import numba
except ImportError:  # optional: the kernels' callers fall back to MXNet's operators
    numba = None

__all__ = ['numba', 'compile_kernel', 'kernel_threads', 'run_in_threads']


def compile_kernel(function, **options):
    """``function`` compiled by numba in nopython mode, releasing the GIL (the callers
    split the work between Python threads) and cached on disk (compiled once per machine, a
    few seconds, not once per process); ``options`` go to ``numba.njit``. Without numba,
    ``function`` itself (not called then: the callers check ``numba``)."""
    if numba is None:
        return function
    return numba.njit(nogil=True, cache=True, **options)(function)


def kernel_threads():
    """Threads for the numba kernels: what MXNet's operators are given (OMP_NUM_THREADS),
    else the cores."""
    try:
        return max(1, int(os.environ.get('OMP_NUM_THREADS', '')))
    except ValueError:
        return os.cpu_count() or 1


def run_in_threads(kernel, items):
    """Call ``kernel(part)`` on ``items`` (a sequence of work items, e.g. indices) split into
    contiguous parts, one per thread (:func:`kernel_threads`, at most one per item), in
    parallel: the kernels release the GIL. One part runs in this thread."""
    items = np.asarray(items)
    parts = np.array_split(items, max(1, min(kernel_threads(), len(items))))
    if len(parts) == 1:
        kernel(parts[0])
        return
    with ThreadPoolExecutor(len(parts)) as pool:
        list(pool.map(kernel, parts))
