"""Model zoo: registry, backbones and segmentation networks.

Importing it reads the weights table, not the model files (MXNet): a submodule such as
``gluonseg.model_zoo.fcn`` is imported on first access (PEP 562).
"""
from ..utils.lazy import lazy_exports
from .registry import get_model, list_models, model_info, register_model, register_weights

__getattr__, __dir__, _ = lazy_exports(__name__, {})
__all__ = ['get_model', 'list_models', 'model_info', 'register_model', 'register_weights']
