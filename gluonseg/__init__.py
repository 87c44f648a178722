"""gluonseg: a model zoo for semantic and instance segmentation on Apache MXNet Gluon.

    >>> import gluonseg
    >>> net = gluonseg.get_model('deeplab_resnet101_voc', pretrained=True)

``import gluonseg`` does not import MXNet: :func:`get_model`, :func:`list_models`,
:func:`model_info`, :func:`register_model` and :func:`optimize` (and the subpackages, e.g.
``gluonseg.model_zoo``) are loaded on first use, so the ``gluonseg`` command's help and
the MXNet-free parts of the package start at once.
"""
from importlib import import_module as _import_module
from importlib.util import find_spec as _find_spec

__version__ = '0.1.0'

# A cu112 build of MXNet needs the CUDA 11 libraries of the nvidia-*-cu11 wheels loaded
# before libmxnet.so is; this must run before anything imports mxnet.
from . import _cuda  # noqa: E402

_cuda.preload_cuda_libraries()

# name -> the module that defines it; importing that module imports MXNet (seconds).
_LAZY_ATTRIBUTES = {
    'get_model': 'gluonseg.model_zoo',
    'list_models': 'gluonseg.model_zoo',
    'model_info': 'gluonseg.model_zoo',
    'register_model': 'gluonseg.model_zoo',
    'optimize': 'gluonseg.model_zoo.optimize',
}

__all__ = sorted(_LAZY_ATTRIBUTES)


def __getattr__(name):
    """The model-zoo functions and the subpackages, imported on first access (PEP 562)."""
    if name in _LAZY_ATTRIBUTES:
        value = getattr(_import_module(_LAZY_ATTRIBUTES[name]), name)
        globals()[name] = value  # later accesses skip this function
        return value
    if not name.startswith('_') and _find_spec('%s.%s' % (__name__, name)):
        return _import_module('%s.%s' % (__name__, name))
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


def __dir__():
    return sorted(set(globals()) | set(__all__))
