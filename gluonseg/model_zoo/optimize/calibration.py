"""What the optimizations of both model kinds share: the calibration modes, the check that a
network has its weights, the calibration batches, and a block's inference graph as a
``SymbolBlock`` sharing its parameters."""
import warnings

import mxnet as mx
import numpy as np
from mxnet import autograd

from ...utils.mxnet_compat import has_data

__all__ = ['CALIB_MODES', 'calibration_batches', 'check_initialized', 'symbol_block']

CALIB_MODES = ('naive', 'entropy', 'none')


def check_initialized(net):
    """Raise a ValueError naming the first parameter of ``net`` without a value."""
    for name, param in net.collect_params().items():
        if not has_data(param):  # not initialized, or deferred until the first call
            raise ValueError('Parameter %s of %s has no value yet: initialize or load the '
                             'weights (and run the network once if its shapes are inferred) '
                             'before optimize()' % (name, type(net).__name__))


def calibration_batches(calib_data, num_batches, calib_mode, ctx):
    """At most ``num_batches`` image batches (N, 3, H, W) of ``calib_data`` (NDArrays, numpy
    arrays or ``(data, ...)`` tuples) on ``ctx``; None with ``calib_mode='none'``."""
    if calib_mode == 'none':
        return None
    if calib_data is None:
        raise ValueError("int8 with calib_mode=%r needs calib_data (a few batches of "
                         "normalized images); pass calib_mode='none' to compute the "
                         "thresholds at run time instead" % (calib_mode,))
    batches = []
    for batch in calib_data:
        if len(batches) >= num_batches:
            break
        if isinstance(batch, (list, tuple)):
            batch = batch[0]  # (data, label) from a DataLoader
        batch = mx.nd.array(batch, ctx=ctx) if isinstance(batch, np.ndarray) \
            else batch.as_in_context(ctx)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError('calibration batches must be (N, 3, H, W), got %s'
                             % (batch.shape,))
        batches.append(batch)
    if not batches:
        raise ValueError('calib_data gave no batch')
    return batches


def symbol_block(block, num_inputs, input_names=None):
    """``block``'s inference graph as a SymbolBlock sharing its parameters (inputs named
    ``input_names``, by default ``data, data1, data2, ...``)."""
    input_names = input_names or ['data' if i == 0 else 'data%d' % i for i in range(num_inputs)]
    inputs = [mx.sym.var(name) for name in input_names]
    with autograd.predict_mode():
        out = block(*inputs)
    if isinstance(out, (list, tuple)):
        out = mx.sym.Group(list(out))
    with warnings.catch_warnings():  # "Cannot decide type for ... data": it is float32
        warnings.simplefilter('ignore', UserWarning)
        return mx.gluon.SymbolBlock(out, inputs, params=block.collect_params())
