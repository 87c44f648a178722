"""gluonseg: a model zoo for semantic and instance segmentation on Apache MXNet Gluon.

    >>> import gluonseg
    >>> net = gluonseg.get_model('deeplab_resnet101_voc', pretrained=True)
"""
__version__ = '0.1.0'

# A cu112 build of MXNet needs the CUDA 11 libraries of the nvidia-*-cu11 wheels loaded
# before libmxnet.so is; this must run before anything imports mxnet.
from . import _cuda  # noqa: E402

_cuda.preload_cuda_libraries()

from .model_zoo import get_model, list_models, register_model, model_info  # noqa: E402,F401
from .model_zoo.optimize import optimize  # noqa: E402,F401
