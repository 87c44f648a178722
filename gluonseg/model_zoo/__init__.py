"""Model zoo: registry, backbones and segmentation networks.

Importing it reads the weights table, not the model files (MXNet): a submodule such as
``gluonseg.model_zoo.fcn`` is imported on first access (PEP 562).
"""
from importlib import import_module as _import_module
from importlib.util import find_spec as _find_spec

from .registry import get_model, list_models, model_info, register_model, register_weights

__all__ = ['get_model', 'list_models', 'model_info', 'register_model', 'register_weights']


def __getattr__(name):
    if not name.startswith('_') and _find_spec('%s.%s' % (__name__, name)):
        return _import_module('%s.%s' % (__name__, name))
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
