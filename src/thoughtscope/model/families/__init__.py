"""Thought families: what differs between continuous-thought models (CODI, Coconut, …).

The engine asks a model's family (:class:`ThoughtFamily`) for the prompt layout, the
special ids and how the next thought is made; everything else is shared. Adding a family
is one module here and one :func:`register_family` call in it, imported below.
"""

from thoughtscope.model.families.base import (
    FamilyEntry,
    StopCheck,
    ThoughtFamily,
    family_entry,
    family_names,
    register_family,
)
from thoughtscope.model.families.coconut import CoconutFamily, CoconutModel
from thoughtscope.model.families.codi import CodiFamily, CodiModel
from thoughtscope.model.families.soft_thinking import SoftThinkingConfig, SoftThinkingFamily

__all__ = [
    "CoconutFamily",
    "CoconutModel",
    "CodiFamily",
    "CodiModel",
    "FamilyEntry",
    "SoftThinkingConfig",
    "SoftThinkingFamily",
    "StopCheck",
    "ThoughtFamily",
    "family_entry",
    "family_names",
    "register_family",
]
