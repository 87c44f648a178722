"""Model zoo: registry, backbones and segmentation networks."""
from .registry import get_model, list_models, register_model, model_info  # noqa: F401
