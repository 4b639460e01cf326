"""A pre-LayerNorm transformer block over token sequences, with attention through torch's
``scaled_dot_product_attention``: the one block the transformer families (discrete-diffusion
VLA, energy transformer, DiT variants) stack."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attention_mask(key_mask: torch.Tensor | None = None, causal_len: int | None = None) -> torch.Tensor | None:
    """Boolean SDPA mask (True = may attend) from a key padding mask (B, N) (True = valid token)
    and/or causal attention over ``causal_len`` tokens; shape broadcastable to (B, heads, N, N)."""
    mask = None
    if key_mask is not None:
        mask = key_mask[:, None, None, :]
    if causal_len is not None:
        causal = torch.ones(causal_len, causal_len, dtype=torch.bool, device=None if mask is None else mask.device).tril()
        mask = causal if mask is None else mask & causal
    return mask


def self_attention(qkv: torch.Tensor, n_heads: int, attn_mask: torch.Tensor | None, dropout_p: float) -> torch.Tensor:
    """Multi-head SDPA of packed projections ``qkv`` (B, N, 3D) -> (B, N, D), before the output
    projection; shared by every attention block (TransformerBlock, the DiT's adaLN-Zero block)."""
    b, n, d3 = qkv.shape
    d = d3 // 3
    q, k, v = qkv.view(b, n, 3, n_heads, d // n_heads).permute(2, 0, 3, 1, 4)
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    return a.transpose(1, 2).reshape(b, n, d)


class TransformerBlock(nn.Module):
    """x + Attn(LN(x)); x + MLP(LN(x))."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"transformer dim {dim} not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D); attn_mask from ``attention_mask`` (bool, True = attend) or None."""
        a = self_attention(self.qkv(self.norm1(x)), self.n_heads, attn_mask, self.dropout if self.training else 0.0)
        x = x + self.proj(a)
        return x + self.mlp(self.norm2(x))


class TransformerEncoder(nn.Module):
    """A stack of ``TransformerBlock`` with a final LayerNorm."""

    def __init__(self, dim: int, depth: int, n_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, attn_mask)
        return self.norm(x)
