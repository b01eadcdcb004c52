"""Loading and holding CODI models."""

from thoughtscope.model.codi import CodiModel, new_codi_model, resolve_device, resolve_dtype
from thoughtscope.model.config import CodiConfig
from thoughtscope.model.loading import OfficialOptions, load_model, toy_model_path
from thoughtscope.model.projection import Projection
from thoughtscope.model.tokenizer import byte_level_tokenizer

__all__ = [
    "CodiConfig",
    "CodiModel",
    "OfficialOptions",
    "Projection",
    "byte_level_tokenizer",
    "load_model",
    "new_codi_model",
    "resolve_device",
    "resolve_dtype",
    "toy_model_path",
]
