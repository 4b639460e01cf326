"""The Policy protocol every family implements, and the config fields they all share.

The trainer only ever calls ``policy.loss(batch)``; the evaluator and the robot control loop only
ever call ``policy.act(obs, state)``. Observation history is stacked by the caller (see
``robopolicy.history.ObsHistory``); whatever a policy must remember between calls lives in the
returned ``PolicyState``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from robopolicy.types import Batch, FeatureSpec, Obs, PolicyState


@dataclass
class PolicyConfig:
    """Fields every policy family has. Families subclass this and add their own."""

    n_obs_steps: int = 2
    """Observation frames the policy conditions on (the current one and n-1 before it)."""
    horizon: int = 16
    """Length of the predicted action chunk, starting at the oldest observed frame."""
    n_action_steps: int = 8
    """Actions executed from each chunk before the policy is asked again."""


class Policy(nn.Module):
    """Base class: a family implements ``loss``, ``act`` and (if it keeps memory) ``init_state``."""

    config_class: ClassVar[type[PolicyConfig]] = PolicyConfig
    registry_name: ClassVar[str] = ""

    def __init__(self, config: PolicyConfig, features: FeatureSpec, stats: dict[str, dict[str, Any]] | None):
        """``stats`` are the dataset's per-feature statistics (``meta/stats.json``); None when the
        policy is about to be loaded from a checkpoint (the buffers are then filled by load)."""
        super().__init__()
        self.config = config
        self.features = features

    # --- the three calls the rest of the framework makes -------------------------------------
    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def init_state(self, batch_size: int) -> PolicyState:
        return PolicyState()

    def act(self, obs: Obs, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        """obs holds ``n_obs_steps`` stacked frames; returns a chunk ``(B, n_action_steps, A)`` in
        raw action units and the next state."""
        raise NotImplementedError

    # --- what the data pipeline needs to know -------------------------------------------------
    def delta_timestamps(self) -> dict[str, list[float]]:
        """Offsets (seconds) the dataset must return per key for one training sample."""
        c, fps = self.config, self.features.fps
        obs_offsets = [(i - c.n_obs_steps + 1) / fps for i in range(c.n_obs_steps)]
        out = {"action": [(i - c.n_obs_steps + 1) / fps for i in range(c.horizon)]}
        if self.features.state_dim is not None:
            out["observation.state"] = obs_offsets
        for key in self.features.image_keys:
            out[key] = obs_offsets
        return out
