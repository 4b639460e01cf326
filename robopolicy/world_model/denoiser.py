"""Residual MLP with optional FiLM conditioning: the state model's denoiser and heads."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """x + MLP(FiLM(LayerNorm(x))). With ``cond_dim`` the norm's scale and shift come from the
    conditioning vector (DIAMOND's adaptive normalization, for an MLP), zero-initialised so every
    block starts as the plain residual."""

    def __init__(self, dim: int, cond_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=cond_dim is None)
        self.film = nn.Linear(cond_dim, 2 * dim) if cond_dim else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(x)
        if self.film is not None:
            scale, shift = self.film(cond).chunk(2, dim=-1)
            h = h * (1 + scale) + shift
        return x + self.mlp(h)


class ResidualMLP(nn.Module):
    """in_dim -> hidden -> ``depth`` residual blocks -> out_dim (last layer zero-initialised)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, depth: int, cond_dim: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList([ResidualBlock(hidden, cond_dim, dropout) for _ in range(depth)])
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, out_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, cond)
        return self.out(torch.nn.functional.silu(self.out_norm(h)))
