"""Checks that keep non-finite numbers out of a training run: whether arrays (gradients,
weights, optimizer states) are all finite, which of them are not, and, on request, whether
every training sample is finite (:class:`FiniteInputs`).

A NaN can be invisible in the loss: MXNet's CPU ReLU maps NaN to 0, so a NaN pixel gives a
finite loss and NaN gradients in the first layers only. The trainer therefore checks the
gradients before every update and the weights before every checkpoint write.
"""
import mxnet as mx
import numpy as np
from mxnet import gluon

from ..utils.mxnet_compat import optimizer_states, structural_params, trainer_params

__all__ = ['NonFiniteError', 'all_finite', 'nonfinite_names', 'first_names', 'gradient_arrays',
           'parameter_arrays', 'optimizer_state_arrays', 'FiniteInputs']

# multi_all_finite takes at most a few hundred inputs per call (300 crashed MXNet 1.9.1).
_CHUNK = 128


class NonFiniteError(FloatingPointError):
    """The loss, the gradients or the weights of a training run became NaN or infinite."""


def all_finite(arrays):
    """Whether every element of the NDArrays ``arrays`` is finite.

    On the CPU each array is tested by NumPy through a zero-copy DLPack view (ResNet-18's
    12 M values: a few ms, where MXNet's ``multi_all_finite`` took about 100 times longer
    and a copy with ``asnumpy`` 4 times); on GPUs with ``multi_all_finite``, as MXNet's AMP
    does, with one synchronisation per device (not run here: no GPU MXNet).
    """
    by_context = {}
    for array in arrays:
        by_context.setdefault(array.context, []).append(array)
    for ctx, group in by_context.items():
        if ctx.device_type in ('cpu', 'cpu_pinned', 'cpu_shared'):
            if not all(np.isfinite(_host_values(array)).all() for array in group):
                return False
            continue
        flag = mx.nd.ones((1,), ctx=ctx)
        for start in range(0, len(group), _CHUNK):
            chunk = group[start:start + _CHUNK]
            mx.nd.multi_all_finite(*chunk, num_arrays=len(chunk), init_output=False, out=flag)
        if not flag.asscalar():
            return False
    return True


class _DLPackView(object):
    """What ``np.from_dlpack`` takes: MXNet 1.9 hands out bare capsules, NumPy wants an object
    with ``__dlpack__``. The capsule is made for reading (MXNet waits for pending writes)."""

    def __init__(self, array):
        self.array = array

    def __dlpack__(self, stream=None):
        return mx.nd.to_dlpack_for_read(self.array)

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU


def _host_values(array):
    """The values of a CPU NDArray as NumPy sees them: a read-only view where MXNet can give
    one, a copy for arrays in a oneDNN layout (which have no plain memory to view)."""
    try:
        return np.from_dlpack(_DLPackView(array))
    except mx.base.MXNetError:
        return array.asnumpy()


def nonfinite_names(named_arrays):
    """The names of the arrays of ``named_arrays`` (name -> NDArray) holding a NaN or an
    infinity, each with its count of such values, as ``'name (k of n)'`` strings."""
    found = []
    for name, array in named_arrays.items():
        values = array.asnumpy()
        bad = int(values.size - np.isfinite(values).sum())
        if bad:
            found.append('%s (%d of %d)' % (name, bad, values.size))
    return found


def first_names(names, limit=5):
    """``names`` joined for a message, the first ``limit`` of them and '...' for the rest."""
    return ', '.join(list(names[:limit]) + (['...'] if len(names) > limit else []))


def gradient_arrays(net, ctx):
    """``{structural name: gradient}`` of the parameters of ``net`` that have one, on ``ctx``."""
    return {name: param.grad(ctx) for name, param in structural_params(net).items()
            if param.grad_req != 'null'}


def parameter_arrays(net, ctx):
    """``{structural name: array}`` of the parameters of ``net`` (BatchNorm statistics
    included), on ``ctx``."""
    return {name: param.data(ctx) for name, param in structural_params(net).items()}


def optimizer_state_arrays(net, trainer):
    """``{structural name + '.state<i>': array}`` of the optimizer states (e.g. momentum) that
    ``trainer`` holds for the parameters of ``net``; empty before its first update."""
    structural = {id(param): name for name, param in structural_params(net).items()}
    params = trainer_params(trainer)
    arrays = {}
    for index, state in optimizer_states(trainer).items():
        if index >= len(params):
            continue
        name = structural.get(id(params[index]), params[index].name)
        parts = state if isinstance(state, (list, tuple)) else [state]
        for i, part in enumerate(parts):
            if isinstance(part, mx.nd.NDArray):
                arrays['%s.state%d' % (name, i)] = part
    return arrays


class FiniteInputs(gluon.data.Dataset):
    """``dataset`` whose samples are checked as they are read: a floating-point field with a
    NaN or an infinity raises a ValueError naming the sample (its index, and its id where the
    dataset has ``ids``) and the field, before the sample reaches the network.

    Parameters
    ----------
    dataset : Dataset
        Indexed like the dataset it replaces (plain indices, or the ``(epoch, index)`` keys of
        :class:`~gluonseg.engine.data.EpochBatchSampler`).
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        sample = self.dataset[key]
        fields = sample if isinstance(sample, tuple) else (sample,)
        for position, field in enumerate(fields):
            values = field.asnumpy() if isinstance(field, mx.nd.NDArray) else field
            if not isinstance(values, np.ndarray) or not np.issubdtype(values.dtype,
                                                                      np.floating):
                continue
            bad = int(values.size - np.isfinite(values).sum())
            if bad:
                raise ValueError('Training sample %s has %d NaN or infinite value(s) of %d in '
                                 'field %d (%s, shape %s): fix or drop that sample'
                                 % (self.describe(key), bad, values.size, position,
                                    'the image' if position == 0 else 'a target',
                                    'x'.join(map(str, values.shape))))
        return sample

    def describe(self, key):
        """``'index 12 (id 2007_000032) of epoch 1'`` for the key of a sample."""
        epoch, index = key if isinstance(key, tuple) else (None, key)
        text = 'index %d' % index
        inner = self.dataset
        while inner is not None:
            ids = getattr(inner, 'ids', None)
            if ids is not None and 0 <= index < len(ids):
                text += ' (id %s)' % (ids[index],)
                break
            inner = getattr(inner, 'dataset', None)
        return text if epoch is None else '%s of epoch %d' % (text, epoch + 1)
