"""Per-feature normalization fitted from dataset statistics (``meta/stats.json``), kept as
module buffers so it is saved and loaded with the policy.

Modes:
* ``"min_max"``: ``[min, max] -> [-1, 1]``. A constant feature (max - min < eps) maps to 0.
* ``"mean_std"``: ``(x - mean) / std``, with std floored at eps.
* ``"identity"``: unchanged (images already in [0, 1]).

Every mode is an affine map ``x * scale + offset``, so one pair of buffers per feature serves
all of them. A normalizer built without stats (``stats=None``, about to be loaded from a
checkpoint) holds NaN buffers and refuses to run until they are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from robopolicy.types import STATE_KEY, FeatureSpec, Obs

MODES = ("min_max", "mean_std", "identity")
EPS = 1e-6


@dataclass
class NormalizerConfig:
    """How each observation feature is normalized before the encoder sees it."""

    state: str = "min_max"
    """Mode for ``observation.state``: min_max | mean_std | identity."""
    images: str = "identity"
    """Mode for camera images (already float in [0, 1]): identity | mean_std (per channel)."""


def stat_tensor(stats: Mapping[str, Any], feature: str, name: str) -> torch.Tensor:
    """``stats[feature][name]`` as a float32 tensor, with a clear error if it is missing or bad."""
    if feature not in stats:
        raise ValueError(f"dataset stats have no entry for feature {feature!r} (have: {sorted(stats)})")
    entry = stats[feature]
    if name not in entry:
        raise ValueError(f"dataset stats for {feature!r} have no {name!r} (have: {sorted(entry)})")
    value = torch.as_tensor(np.asarray(entry[name], dtype=np.float32))
    if not torch.isfinite(value).all():
        raise ValueError(f"dataset stats {feature}.{name} contain non-finite values")
    return value


class FeatureNormalizer(nn.Module):
    """One feature's affine normalization ``x * scale + offset`` (buffers of the stats' shape)."""

    def __init__(self, feature: str, mode: str, shape: tuple[int, ...], stats: Mapping[str, Any] | None = None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"normalization mode for {feature!r} must be one of {MODES}, got {mode!r}")
        self.feature, self.mode, self.shape = feature, mode, tuple(shape)
        self.register_buffer("scale", torch.full(self.shape, float("nan")))
        self.register_buffer("offset", torch.full(self.shape, float("nan")))
        self._checked = False
        if mode == "identity":
            self.scale.fill_(1.0)
            self.offset.fill_(0.0)
        elif stats is not None:
            self.fit(stats)

    def fit(self, stats: Mapping[str, Any]) -> None:
        """Set the buffers from ``stats[feature]`` (``min``/``max`` or ``mean``/``std``)."""
        if self.mode == "identity":
            return
        names = ("min", "max") if self.mode == "min_max" else ("mean", "std")
        a, b = (stat_tensor(stats, self.feature, n) for n in names)
        for n, v in zip(names, (a, b)):
            if v.shape != self.shape:
                raise ValueError(f"dataset stats {self.feature}.{n} have shape {tuple(v.shape)}, expected {self.shape}")
        if self.mode == "min_max":
            if (b < a).any():
                raise ValueError(f"dataset stats for {self.feature!r}: max < min in some dimension")
            span = b - a
            scale = torch.where(span > EPS, 2.0 / span.clamp_min(EPS), torch.ones_like(span))
            offset = -(a + b) / 2 * scale
        else:
            scale = 1.0 / b.clamp_min(EPS)
            offset = -a * scale
        self.scale.copy_(scale)
        self.offset.copy_(offset)
        self._checked = False

    def _check(self) -> None:
        # Once per instance (after construction or load): catches a policy used before its
        # statistics were fitted or loaded, without a sync on every call.
        if not self._checked:
            if not (torch.isfinite(self.scale).all() and torch.isfinite(self.offset).all()):
                raise ValueError(
                    f"normalizer for {self.feature!r} has no statistics: build it with dataset stats or load a checkpoint"
                )
            self._checked = True

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._checked = False

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "identity":
            return x
        self._check()
        return x * self.scale + self.offset

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "identity":
            return x
        self._check()
        return (x - self.offset) / self.scale

    def extra_repr(self) -> str:
        return f"{self.feature!r}, mode={self.mode!r}, shape={self.shape}"


def _buffer_name(feature: str) -> str:
    # Module names may not contain dots.
    return feature.replace(".", "__")


class Normalizer(nn.Module):
    """Normalizers for a set of features, addressed by feature name (``"observation.state"``)."""

    def __init__(self, modes: Mapping[str, str], shapes: Mapping[str, tuple[int, ...]], stats: Mapping[str, Any] | None):
        super().__init__()
        missing = set(modes) - set(shapes)
        if missing:
            raise ValueError(f"no shape given for normalized features {sorted(missing)}")
        self.norms = nn.ModuleDict(
            {_buffer_name(k): FeatureNormalizer(k, m, tuple(shapes[k]), stats) for k, m in modes.items()}
        )

    @classmethod
    def for_observations(cls, features: FeatureSpec, config: NormalizerConfig, stats: Mapping[str, Any] | None) -> "Normalizer":
        """State and camera normalizers for a policy's observations."""
        modes, shapes = {}, {}
        if features.state_dim is not None:
            modes[STATE_KEY], shapes[STATE_KEY] = config.state, (features.state_dim,)
        for key, (c, _, _) in zip(features.image_keys, features.cameras.values()):
            modes[key], shapes[key] = config.images, (c, 1, 1)
        return cls(modes, shapes, stats)

    def __contains__(self, feature: str) -> bool:
        return _buffer_name(feature) in self.norms

    def _get(self, feature: str) -> FeatureNormalizer:
        name = _buffer_name(feature)
        if name not in self.norms:
            raise KeyError(f"normalizer has no feature {feature!r}")
        return self.norms[name]  # type: ignore[return-value]

    def normalize(self, feature: str, x: torch.Tensor) -> torch.Tensor:
        return self._get(feature).normalize(x)

    def unnormalize(self, feature: str, x: torch.Tensor) -> torch.Tensor:
        return self._get(feature).unnormalize(x)

    def normalize_obs(self, obs: Obs) -> Obs:
        """A copy of ``obs`` with every feature this normalizer knows normalized; others untouched."""
        out = dict(obs)
        for norm in self.norms.values():
            if norm.feature in out:
                out[norm.feature] = norm.normalize(out[norm.feature])
        return out
