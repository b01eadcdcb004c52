"""Latent-reasoning models: the generic model, thought families (CODI first), loading."""

from thoughtscope.model.codi import CodiModel, new_codi_model, resolve_device, resolve_dtype
from thoughtscope.model.config import CodiConfig
from thoughtscope.model.families import CodiFamily, ThoughtFamily, register_family
from thoughtscope.model.loading import OfficialOptions, load_model, toy_model_path
from thoughtscope.model.projection import Projection
from thoughtscope.model.thought_model import ThoughtModel
from thoughtscope.model.tokenizer import byte_level_tokenizer

__all__ = [
    "CodiConfig",
    "CodiFamily",
    "CodiModel",
    "OfficialOptions",
    "Projection",
    "ThoughtFamily",
    "ThoughtModel",
    "byte_level_tokenizer",
    "load_model",
    "new_codi_model",
    "register_family",
    "resolve_device",
    "resolve_dtype",
    "toy_model_path",
]
