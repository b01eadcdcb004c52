"""The projection that turns a last-layer hidden state into the next continuous thought."""

from __future__ import annotations

from torch import nn


class Projection(nn.Sequential):
    """``Dropout, Linear(d, width), GELU, Linear(width, d)[, LayerNorm(d)]``.

    Submodule names (``1``, ``3``, ``ln``) match the published CODI checkpoints, whose
    state dicts store this module under ``prj.``.

    Shapes: ``(..., d) -> (..., d)``.
    """

    def __init__(self, d_model: int, width: int, *, layer_norm: bool = True, dropout: float = 0.0):
        super().__init__(
            nn.Dropout(dropout),
            nn.Linear(d_model, width),
            nn.GELU(),
            nn.Linear(width, d_model),
        )
        if layer_norm:
            self.add_module("ln", nn.LayerNorm(d_model))

    @property
    def width(self) -> int:
        """Hidden width of the projection (``prj_dim`` in the CODI code)."""
        linear = self[1]
        assert isinstance(linear, nn.Linear)
        return int(linear.out_features)

    @property
    def has_layer_norm(self) -> bool:
        """Whether the final LayerNorm is present."""
        return hasattr(self, "ln")
