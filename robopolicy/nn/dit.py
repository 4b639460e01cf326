"""A diffusion transformer (DiT, Peebles & Xie 2023) with adaLN-Zero blocks: the one copy of the
block that PAD (joint image + action denoising) and the image world model build from.

Conditioning enters two ways, so that a caller can put whatever it conditions on where it fits:

* a **vector** ``cond`` (B, C) (or per token (B, N, C)): e.g. the diffusion-timestep embedding plus
  a summary of the observation or of the actions; it sets each block's LayerNorm shift/scale and
  residual gates (adaLN-Zero) and the output heads' shift/scale;
* **context tokens** (B, Nc, D) with a padding mask: e.g. observation tokens (cameras, state, the
  instruction) or action tokens; they are prepended to the sequence ("in-context" conditioning),
  attended to by the denoised tokens, and dropped from the output.

adaLN-Zero: the modulation layers start at zero, so every block starts as the identity and the
heads output zero; ``zero_init=False`` draws them like any other layer instead (wiring tests need
that: a zero gate stops every gradient behind it).

Image helpers: ``patchify`` / ``unpatchify`` (images <-> one token per p x p patch, channels last in
each token) and ``sincos_2d`` (fixed 2-D position embedding of the patch grid).
"""

from __future__ import annotations

import torch
from torch import nn

from robopolicy.nn.embeddings import sinusoidal_embedding
from robopolicy.nn.transformer import self_attention


# --- image tokens ------------------------------------------------------------------------------
def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, (H/p)*(W/p), p*p*C), row-major over the patch grid, channels last."""
    if images.dim() != 4:
        raise ValueError(f"patchify expects (B, C, H, W) images, got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    if patch < 1 or h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not divisible by patch size {patch}")
    gh, gw = h // patch, w // patch
    x = images.reshape(b, c, gh, patch, gw, patch).permute(0, 2, 4, 3, 5, 1)  # B, gh, gw, p, p, C
    return x.reshape(b, gh * gw, patch * patch * c)


def unpatchify(tokens: torch.Tensor, patch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Inverse of ``patchify``: (B, (H/p)*(W/p), p*p*C) -> (B, C, H, W)."""
    if height % patch or width % patch:
        raise ValueError(f"image size {height}x{width} is not divisible by patch size {patch}")
    gh, gw = height // patch, width // patch
    if tokens.dim() != 3 or tokens.shape[1:] != (gh * gw, patch * patch * channels):
        raise ValueError(
            f"unpatchify expects (B, {gh * gw}, {patch * patch * channels}) tokens, got {tuple(tokens.shape)}"
        )
    x = tokens.reshape(tokens.shape[0], gh, gw, patch, patch, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(tokens.shape[0], channels, height, width)


def sincos_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """(height*width, dim) fixed position embedding of a grid: half the features encode the row,
    half the column (sin/cos), row-major like ``patchify``."""
    if dim % 4:
        raise ValueError(f"2-D sin/cos embedding dim must be divisible by 4, got {dim}")
    rows = torch.arange(height).repeat_interleave(width)
    cols = torch.arange(width).repeat(height)
    return torch.cat((sinusoidal_embedding(rows, dim // 2), sinusoidal_embedding(cols, dim // 2)), dim=-1)


# --- blocks ------------------------------------------------------------------------------------
def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift, with (B, D) modulation broadcast over the tokens of x (B, N, D)."""
    if shift.dim() == 2:
        shift, scale = shift.unsqueeze(1), scale.unsqueeze(1)
    return x * (1 + scale) + shift


def _gate(g: torch.Tensor) -> torch.Tensor:
    return g.unsqueeze(1) if g.dim() == 2 else g


class AdaLNZeroBlock(nn.Module):
    """x + g1 * Attn(modulate(LN(x), s1, b1)); x + g2 * MLP(modulate(LN(x), s2, b2)), with the six
    modulation vectors a linear function of SiLU(cond)."""

    def __init__(self, dim: int, n_heads: int, cond_dim: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"DiT dim {dim} not divisible by n_heads {n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim), nn.Dropout(dropout))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D); cond (B, C) or (B, N, C); attn_mask bool (True = may attend) or None."""
        s1, b1, g1, s2, b2, g2 = self.modulation(cond).chunk(6, dim=-1)
        h = modulate(self.norm1(x), b1, s1)
        a = self_attention(self.qkv(h), self.n_heads, attn_mask, self.dropout if self.training else 0.0)
        x = x + _gate(g1) * self.proj(a)
        return x + _gate(g2) * self.mlp(modulate(self.norm2(x), b2, s2))


class AdaLNHead(nn.Module):
    """Output head of one token group (DiT's final layer): modulate(LN(x)) -> Linear to out_dim."""

    def __init__(self, dim: int, out_dim: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(cond).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


def zero_init_(module: nn.Module) -> None:
    """adaLN-Zero: zero the modulation (and a head's output layer) so the module starts inert."""
    layers = [module.modulation[-1]] + ([module.linear] if isinstance(module, AdaLNHead) else [])
    for layer in layers:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


class DiT(nn.Module):
    """A stack of ``AdaLNZeroBlock`` over [context tokens | input tokens] -> the input tokens'
    hidden states (B, N, D). Callers embed their tokens and apply their own ``AdaLNHead`` per
    token group (e.g. one for image patches, one for actions)."""

    def __init__(self, dim: int, depth: int, n_heads: int, cond_dim: int | None = None, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, zero_init: bool = True):
        super().__init__()
        self.dim, self.cond_dim = dim, cond_dim or dim
        self.blocks = nn.ModuleList(AdaLNZeroBlock(dim, n_heads, self.cond_dim, mlp_ratio, dropout) for _ in range(depth))
        for m in self.modules():  # DiT's initialization: xavier-uniform linears, zero biases
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init:
            for blk in self.blocks:
                zero_init_(blk)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, N, D) tokens to denoise; cond (B, C) (or (B, Nc + N, C) per token); context
        (B, Nc, D) tokens with ``context_mask`` (B, Nc) (True = real); ``attn_mask`` bool over
        the whole [context | x] sequence, broadcastable to (B, heads, Nc + N, Nc + N)."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"DiT input must be (B, N, {self.dim}), got {tuple(x.shape)}")
        n_ctx = 0
        if context is not None:
            if context.dim() != 3 or context.shape[0] != x.shape[0] or context.shape[-1] != self.dim:
                raise ValueError(f"DiT context must be ({x.shape[0]}, Nc, {self.dim}), got {tuple(context.shape)}")
            n_ctx = context.shape[1]
            x = torch.cat((context.to(x.dtype), x), dim=1)
            if context_mask is not None and not bool(context_mask.all()):
                keys = torch.cat((context_mask.bool(), context_mask.new_ones(x.shape[0], x.shape[1] - n_ctx, dtype=torch.bool)), 1)
                keys = keys[:, None, None, :]
                attn_mask = keys if attn_mask is None else attn_mask & keys
        for blk in self.blocks:
            x = blk(x, cond, attn_mask)
        return x[:, n_ctx:]
