"""Mixed-precision training with MXNet's AMP (``mxnet.contrib.amp``).

AMP rewrites MXNet's operators so that convolutions and matrix products run in ``float16``
(GPUs) or ``bfloat16`` (CPUs with oneDNN, and GPUs) while the weights, the optimizer and the
loss stay in float32. It patches MXNet globally, so it must be switched on with
:func:`init_amp` *before the network is built*; the trainers then check it was, and with
``float16`` scale the loss dynamically (an update whose gradients overflow is skipped and the
scale halved).

What runs here (CPU): ``bfloat16`` training of the semantic models, and of Mask R-CNN
imperatively (see :data:`HYBRID_AMP_CPU_PROBLEM`). ``float16`` needs GPUs: MXNet's CPU
operators have no float16 matrix product ("FP16 gemm on cpu not implemented").
"""
import logging

from mxnet.contrib import amp

from ..utils.mxnet_compat import amp_initialized
from .choices import AMP_DTYPES

__all__ = ['AMP_DTYPES', 'init_amp', 'amp_dtype', 'check_amp', 'HYBRID_AMP_CPU_PROBLEM']


#: Why Mask R-CNN trains imperatively under AMP on CPUs.
HYBRID_AMP_CPU_PROBLEM = (
    'MXNet 1.9.1 crashes (segmentation fault, in oneDNN) in the backward pass of a hybridized '
    'network whose Deconvolution (the mask head\'s upsampling) gets AMP\'s input casts, even '
    'when no operator runs in low precision; imperatively it trains')

_initialized = None  # the dtype init_amp switched on


def init_amp(dtype):
    """Switch AMP on for ``dtype`` (``'float16'`` or ``'bfloat16'``); call it before building
    the network. Calling it again with the same dtype does nothing.

    Raises
    ------
    ValueError
        For another dtype, or when AMP is already on for a different one (AMP cannot be
        switched off or changed in a process).
    """
    global _initialized
    if dtype not in AMP_DTYPES:
        raise ValueError('Unknown AMP dtype %r; choose one of %s' % (dtype, ', '.join(AMP_DTYPES)))
    if _initialized == dtype:
        return
    if _initialized is not None or amp_initialized():
        raise ValueError('AMP is already on in this process (for %s); it cannot be switched to '
                         '%s' % (_initialized or 'a dtype set outside gluonseg', dtype))
    # amp.init logs through the root logger, which would give it a console handler
    # (logging.basicConfig) and print every gluonseg log line twice.
    root = logging.getLogger()
    handlers = list(root.handlers)
    amp.init(dtype)
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    _initialized = dtype


def amp_dtype():
    """The dtype :func:`init_amp` switched on, or None."""
    return _initialized


def check_amp(dtype, ctx):
    """Check that training with AMP ``dtype`` (None: off) can run on the devices ``ctx``."""
    if dtype is None:
        return
    if dtype not in AMP_DTYPES:
        raise ValueError('Unknown AMP dtype %r; choose one of %s' % (dtype, ', '.join(AMP_DTYPES)))
    if _initialized != dtype:
        raise ValueError('amp=%r needs AMP switched on before the network is built: call '
                         'gluonseg.engine.init_amp(%r) first (it is %s)'
                         % (dtype, dtype, 'on for %s' % _initialized if _initialized else 'off'))
    if dtype == 'float16' and any(c.device_type == 'cpu' for c in ctx):
        raise ValueError('float16 AMP needs GPUs: MXNet has no float16 matrix product on the CPU '
                         '("FP16 gemm on cpu not implemented"); use bfloat16 on CPUs')
