"""thoughtscope: causal interpretability for continuous-thought reasoning models (CODI)."""

__version__ = "0.1.0"
