"""ActionTokenizer: the one mapping between raw action chunks and what a policy models.

* ``continuous``: ``encode`` -> normalized actions ``(B, H, A)`` float (min_max to [-1, 1] or
  mean_std, through ``FeatureNormalizer``); ``decode`` inverts it exactly.
* ``discrete``: per action dimension, ``n_bins`` uniform bins over ``[low, high]`` = the
  dataset's q01..q99 (or min..max) range. ``encode`` -> ``(B, H*A)`` long tokens, time-major
  (all dims of step 0, then step 1, ...); values outside the range fall in the end bins.
  ``decode`` -> bin centers. **Round-trip bound**: for a value inside ``[low, high]``,
  ``|decode(encode(x)) - x| <= width / 2`` with ``width = (high - low) / n_bins``; outside the
  range the error is the distance to the range plus at most ``width / 2``.
  ``two_hot`` gives soft targets ``(B, H*A, n_bins)`` whose ``expectation`` returns ``x`` exactly
  between the first and last bin centers (clipped there otherwise).

The fitted state (scale/offset or low/width) lives in buffers, saved in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from robopolicy.data.stats import exact_quantiles
from robopolicy.normalize import EPS, FeatureNormalizer, stat_tensor
from robopolicy.types import ACTION_KEY

KINDS = ("continuous", "discrete")
BIN_RANGES = ("quantile", "min_max")


@dataclass
class TokenizerConfig:
    """What the policy models in place of raw actions."""

    kind: str = "continuous"
    """continuous (normalized floats) | discrete (per-dimension uniform bins)."""
    normalization: str = "min_max"
    """Continuous kind: min_max | mean_std | identity."""
    n_bins: int = 256
    """Discrete kind: bins per action dimension (= vocabulary size)."""
    bin_range: str = "quantile"
    """Discrete kind: bins span q01..q99 (quantile) or min..max (min_max) of the dataset."""


def action_stats(actions: torch.Tensor) -> dict[str, torch.Tensor]:
    """min/max/mean/std/q01/q99 per action dimension over every leading axis of ``actions``."""
    flat = actions.detach().reshape(-1, actions.shape[-1]).to(torch.float32)
    if flat.shape[0] == 0:
        raise ValueError("cannot fit an action tokenizer on zero actions")
    q = exact_quantiles(flat.cpu().numpy())
    return {
        "min": flat.min(0).values,
        "max": flat.max(0).values,
        "mean": flat.mean(0),
        "std": flat.std(0, unbiased=False),
        "q01": torch.from_numpy(q["q01"]),
        "q99": torch.from_numpy(q["q99"]),
    }


class ActionTokenizer(nn.Module):
    """Continuous or discrete action representation behind one API (see module docstring)."""

    def __init__(self, config: TokenizerConfig, horizon: int, action_dim: int, stats: Mapping[str, Any] | None = None):
        """``stats``: the dataset's per-feature stats (the ``"action"`` entry is used) or None
        (fit later with ``fit`` or fill from a checkpoint)."""
        super().__init__()
        if config.kind not in KINDS:
            raise ValueError(f"tokenizer kind must be one of {KINDS}, got {config.kind!r}")
        if config.kind == "discrete" and (config.bin_range not in BIN_RANGES or config.n_bins < 2):
            raise ValueError(f"discrete tokenizer needs bin_range in {BIN_RANGES} and n_bins >= 2, got {config}")
        self.config = config
        self.kind = config.kind
        self.horizon, self.action_dim = horizon, action_dim
        self.vocab_size: int | None = config.n_bins if self.kind == "discrete" else None
        if self.kind == "continuous":
            self.norm = FeatureNormalizer(ACTION_KEY, config.normalization, (action_dim,))
        else:
            self.register_buffer("low", torch.full((action_dim,), float("nan")))
            self.register_buffer("width", torch.full((action_dim,), float("nan")))
            self._checked = False
        if stats is not None:
            self.fit(stats)

    # --- fitting -----------------------------------------------------------------------------
    def fit(self, source: torch.Tensor | Mapping[str, Any]) -> None:
        """Fit from raw actions (any shape ending in A) or from dataset stats: either the whole
        ``stats.json`` mapping (its ``"action"`` entry) or that entry itself."""
        if isinstance(source, torch.Tensor):
            if source.shape[-1] != self.action_dim:
                raise ValueError(f"actions have width {source.shape[-1]}, tokenizer expects {self.action_dim}")
            stats: Mapping[str, Any] = {ACTION_KEY: action_stats(source)}
        elif ACTION_KEY in source:
            stats = source
        else:
            stats = {ACTION_KEY: source}
        if self.kind == "continuous":
            self.norm.fit(stats)
            return
        lo_name, hi_name = ("q01", "q99") if self.config.bin_range == "quantile" else ("min", "max")
        try:
            low, high = stat_tensor(stats, ACTION_KEY, lo_name), stat_tensor(stats, ACTION_KEY, hi_name)
        except ValueError as e:
            hint = " (datasets without quantiles: set bin_range='min_max')" if lo_name == "q01" else ""
            raise ValueError(f"{e}{hint}") from None
        if low.shape != (self.action_dim,) or high.shape != (self.action_dim,):
            raise ValueError(f"action stats {lo_name}/{hi_name} have shape {tuple(low.shape)}, expected ({self.action_dim},)")
        if (high < low).any():
            raise ValueError(f"action stats: {hi_name} < {lo_name} in some dimension")
        # A constant dimension gets a tiny range centred on its value, so it decodes to itself.
        span = (high - low).clamp_min(EPS)
        center = (low + high) / 2
        self.low.copy_(center - span / 2)
        self.width.copy_(span / self.config.n_bins)
        self._checked = False

    def _check(self) -> None:
        if not self._checked:
            if not (torch.isfinite(self.low).all() and torch.isfinite(self.width).all()):
                raise ValueError("action tokenizer is not fitted: build it with dataset stats, call fit, or load a checkpoint")
            self._checked = True

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._checked = False

    def _require(self, kind: str, what: str) -> None:
        if self.kind != kind:
            raise ValueError(f"{what} needs a {kind} tokenizer; this one is {self.kind}")

    # --- the common API ----------------------------------------------------------------------
    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, H, A) raw -> (B, H, A) normalized (continuous) or (B, H*A) long (discrete)."""
        if actions.shape[-1] != self.action_dim:
            raise ValueError(f"actions have width {actions.shape[-1]}, tokenizer expects {self.action_dim}")
        if self.kind == "continuous":
            return self.norm.normalize(actions)
        self._check()
        idx = torch.floor((actions - self.low) / self.width).clamp_(0, self.config.n_bins - 1)
        return idx.long().flatten(-2)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of ``encode``: (B, H, A) normalized or (B, H*A) tokens -> (B, H, A) raw
        (bin centers for discrete)."""
        if self.kind == "continuous":
            return self.norm.unnormalize(tokens)
        self._check()
        if tokens.shape[-1] % self.action_dim:
            raise ValueError(f"token length {tokens.shape[-1]} is not a multiple of action_dim {self.action_dim}")
        idx = tokens.unflatten(-1, (-1, self.action_dim)).to(self.low.dtype)
        return self.low + (idx + 0.5) * self.width

    # --- discrete extras ---------------------------------------------------------------------
    def bin_centers(self) -> torch.Tensor:
        """(A, n_bins) raw value of each bin's center."""
        self._require("discrete", "bin_centers")
        self._check()
        k = torch.arange(self.config.n_bins, dtype=self.low.dtype, device=self.low.device)
        return self.low[:, None] + (k + 0.5) * self.width[:, None]

    def two_hot(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, H, A) raw -> (B, H*A, n_bins) soft targets: weight split between the two bin
        centers around each value, so ``expectation(two_hot(x)) == x`` inside the centers' span."""
        self._require("discrete", "two_hot")
        self._check()
        n = self.config.n_bins
        pos = ((actions - self.low) / self.width - 0.5).clamp(0, n - 1).flatten(-2)
        lo = pos.floor().clamp_max(n - 2)
        frac = (pos - lo).unsqueeze(-1)
        lo = lo.long().unsqueeze(-1)
        out = torch.zeros(*pos.shape, n, dtype=actions.dtype, device=actions.device)
        out.scatter_(-1, lo, 1 - frac)
        out.scatter_(-1, lo + 1, frac)
        return out

    def expectation(self, probs: torch.Tensor) -> torch.Tensor:
        """(B, H*A, n_bins) probabilities (e.g. softmax of logits, or ``two_hot`` targets) ->
        (B, H, A) raw expected value over the bin centers."""
        self._require("discrete", "expectation")
        self._check()
        if probs.shape[-1] != self.config.n_bins:
            raise ValueError(f"probabilities have {probs.shape[-1]} bins, tokenizer has {self.config.n_bins}")
        k = torch.arange(self.config.n_bins, dtype=probs.dtype, device=probs.device)
        mean_bin = (probs @ k).unflatten(-1, (-1, self.action_dim))
        return self.low + (mean_bin + 0.5) * self.width

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, horizon={self.horizon}, action_dim={self.action_dim}, vocab_size={self.vocab_size}"
