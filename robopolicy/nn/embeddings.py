"""Timestep embeddings for denoisers: one scalar noise level per sample ``(B,)`` or one per
action slot ``(B, H)`` (streaming diffusion keeps a different noise level in every slot)."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sin/cos features of ``t`` (any shape, int or float) -> ``t.shape + (dim,)``."""
    if dim % 2:
        raise ValueError(f"sinusoidal embedding dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(max_period) / (half - 1)))
    args = t.to(torch.float32).unsqueeze(-1) * freqs
    return torch.cat((args.sin(), args.cos()), dim=-1)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features -> Linear -> Mish -> Linear (Chi et al.'s diffusion step encoder).

    Works on any leading shape, so ``(B,)`` gives ``(B, dim)`` and per-slot ``(B, H)`` gives
    ``(B, H, dim)``."""

    def __init__(self, dim: int, hidden_mult: int = 4):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim * hidden_mult), nn.Mish(), nn.Linear(dim * hidden_mult, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.dim))
