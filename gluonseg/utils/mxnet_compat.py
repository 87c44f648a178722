"""The private parts of MXNet 1.9.1 that gluonseg relies on, each behind one function.

MXNet's public API has no way to do these things (names a block's parameters by their place
in it, load an array into a parameter whatever its initialization state, read the optimizer
states and the dynamic loss scale, write into an NDArray's memory from NumPy). Every use goes
through this module, and ``tests/test_mxnet_compat.py`` checks each function against the
installed MXNet, so an MXNet that changes one of these internals fails there, by name.
"""
import ctypes

import mxnet as mx
import numpy as np
from mxnet.contrib.amp import amp

__all__ = ['structural_params', 'load_into_parameter', 'has_data', 'is_deferred',
           'layer_kwargs', 'CACHED_GRAPH_FIELDS', 'child_blocks', 'is_hybridized',
           'hybridize_flags', 'cached_graph', 'take_cached_graph', 'put_cached_graph', 'trainer_params', 'optimizer_states', 'amp_loss_scaler',
           'loss_scaler_state', 'set_loss_scaler_state', 'amp_initialized',
           'init_kvstore_now', 'host_view']


# ------------------------------------------------------------------------------ Gluon blocks
def structural_params(block):
    """``{structural name: Parameter}`` of ``block``: names by the place in the block
    (``'head.conv.weight'``), the same in two builds of one model, unlike the parameters' own
    names, which carry global counters (``Block._collect_params_with_prefix``; its keys are
    those of ``save_parameters`` files)."""
    return block._collect_params_with_prefix()


def load_into_parameter(param, array, ctx):
    """Set ``param`` to ``array`` on the contexts ``ctx``, whether it is initialized, deferred
    or neither, keeping ``param``'s dtype (``Parameter._load_init``, what
    ``load_parameters`` does per parameter)."""
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    param._load_init(array, ctx, cast_dtype=True, dtype_source='current')


def has_data(param):
    """Whether ``param`` holds values (initialized and its shape known); False when it is not
    initialized or its initialization waits for the first forward (``Parameter._data``)."""
    return param._data is not None


def is_deferred(param):
    """Whether ``param`` was initialized with unknown shape, its values made at the first
    forward (``Parameter._deferred_init``)."""
    return bool(param._deferred_init)


def layer_kwargs(layer):
    """The operator arguments of a Gluon layer (``Conv2D``, ``MaxPool2D``, ...): e.g.
    ``{'kernel': (1, 1), 'stride': (1, 1), 'pad': (0, 0), ...}`` (``Block._kwargs``)."""
    return layer._kwargs


# ------------------------------------------------------------------------ hybridized graphs
# What a HybridBlock keeps of the one graph it traced at its first hybridized call.
CACHED_GRAPH_FIELDS = ('_cached_graph', '_cached_op', '_cached_op_args', '_in_format',
                       '_out_format')


def child_blocks(block):
    """``{name: child block}`` of ``block``'s direct children, in registration order
    (``Block._children``)."""
    return block._children


def is_hybridized(block):
    """Whether ``block.hybridize()`` is on (``HybridBlock._active``)."""
    return block._active


def hybridize_flags(block):
    """The keyword arguments of ``block``'s last ``hybridize()`` (``static_alloc``, ...;
    ``HybridBlock._flags``)."""
    return dict(block._flags)


def cached_graph(block):
    """``(input symbols, output symbol)`` of the graph a hybridized block traced at its first
    call; ``()`` before that (``HybridBlock._cached_graph``)."""
    return block._cached_graph


def take_cached_graph(block):
    """Detach the traced graph and its CachedOp from ``block`` and return them (None when it
    has none); the block's next hybridized call traces afresh. :func:`put_cached_graph` gives
    them back: a block can keep several graphs and run the one it needs."""
    state = tuple(getattr(block, f) for f in CACHED_GRAPH_FIELDS) if block._cached_graph \
        else None
    mx.gluon.HybridBlock._clear_cached_op(block)
    return state


def put_cached_graph(block, state):
    """Make ``state`` (from :func:`take_cached_graph`) the graph ``block`` runs."""
    for field, value in zip(CACHED_GRAPH_FIELDS, state):
        setattr(block, field, value)


# ------------------------------------------------------------------------------ gluon.Trainer
def trainer_params(trainer):
    """The parameters of a ``gluon.Trainer`` in its order, that of its optimizer states and
    kvstore keys (``Trainer._params``)."""
    return trainer._params


def optimizer_states(trainer):
    """``{index in trainer_params: state}`` of a ``gluon.Trainer``'s optimizer (e.g. SGD's
    momentum, an NDArray, or a tuple of them); empty before its first update
    (``Trainer._updaters[0].states``; every device's updater holds the same states with
    ``update_on_kvstore=False``)."""
    updaters = getattr(trainer, '_updaters', None) or []
    return updaters[0].states if updaters else {}


def init_kvstore_now(trainer):
    """Create the kvstore of a ``gluon.Trainer`` and push the initial weights to it now,
    instead of lazily inside the first ``step()`` (``Trainer._init_kvstore`` and
    ``_init_params``)."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()


# ------------------------------------------------------------------------------------- AMP
def amp_initialized():
    """Whether ``mxnet.contrib.amp.init`` ran in this process (``amp._amp_initialized``)."""
    return bool(amp._amp_initialized)


def amp_loss_scaler(trainer):
    """The ``LossScaler`` that ``amp.init_trainer`` attached to a ``gluon.Trainer``
    (``Trainer._amp_loss_scaler``)."""
    return trainer._amp_loss_scaler


def loss_scaler_state(scaler):
    """The state of AMP's dynamic ``LossScaler`` as a dict: ``loss_scale`` (the scale of
    this backward), ``next_loss_scale`` (the one the next update check makes current: MXNet
    applies a change one update late) and ``unskipped`` (updates since the last change)."""
    return {'loss_scale': scaler._loss_scale, 'next_loss_scale': scaler._next_loss_scale,
            'unskipped': scaler._unskipped}


def set_loss_scaler_state(scaler, state):
    """Give a ``LossScaler`` the ``state`` of :func:`loss_scaler_state`."""
    scaler._loss_scale = state['loss_scale']
    scaler._next_loss_scale = state['next_loss_scale']
    scaler._unskipped = state['unskipped']


# ----------------------------------------------------------------------------------- C API
def host_view(array):
    """A writable NumPy view of a float32 CPU NDArray's memory.

    The array must have no pending operations (new, or waited for) and outlive the view.
    MXNet 1.9.1 has no public writable view (``from_dlpack`` of ``to_dlpack_for_write`` is
    read-only in NumPy), hence the C API's ``MXNDArrayGetData``.
    """
    if array.dtype != np.float32 or array.context.device_type != 'cpu':
        raise ValueError('host_view needs a float32 CPU NDArray, got %s on %s'
                         % (np.dtype(array.dtype).name, array.context))
    pointer = ctypes.c_void_p()
    mx.base.check_call(mx.base._LIB.MXNDArrayGetData(array.handle, ctypes.byref(pointer)))
    return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)),
                                 shape=array.shape)
