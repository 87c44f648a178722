"""gluonseg: a model zoo for semantic and instance segmentation on Apache MXNet Gluon.

    >>> import gluonseg
    >>> net = gluonseg.get_model('deeplab_resnet101_voc', pretrained=True)

``import gluonseg`` does not import MXNet: :func:`get_model`, :func:`list_models`,
:func:`model_info`, :func:`register_model` and :func:`optimize` (and the subpackages, e.g.
``gluonseg.model_zoo``) are loaded on first use, so the ``gluonseg`` command's help and
the MXNet-free parts of the package start at once.
"""
__version__ = '0.1.0'

# A cu112 build of MXNet needs the CUDA 11 libraries of the nvidia-*-cu11 wheels loaded
# before libmxnet.so is; this must run before anything imports mxnet.
from . import _cuda  # noqa: E402

_cuda.preload_cuda_libraries()

from .utils.lazy import lazy_exports as _lazy_exports  # noqa: E402

# name -> the module that defines it; importing that module imports MXNet (seconds).
__getattr__, __dir__, __all__ = _lazy_exports(__name__, {
    'gluonseg.model_zoo': ('get_model', 'list_models', 'model_info', 'register_model'),
    'gluonseg.model_zoo.optimize': ('optimize',),
})
