"""Model zoo: registry, backbones and segmentation networks."""
from .registry import get_model, list_models, model_info, register_model, register_weights  # noqa: F401
