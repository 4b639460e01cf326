"""The Policy protocol every family implements, and the config fields they all share.

The trainer only ever calls ``policy.loss(batch)``; the evaluator and the robot control loop only
ever call ``policy.act(obs, state)``. Observation history is stacked by the caller (see
``robopolicy.history.ObsHistory``); whatever a policy must remember between calls lives in the
returned ``PolicyState``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robopolicy.types import ACTION_KEY, ACTION_PAD_KEY, Batch, FeatureSpec, Obs, PolicyState


def masked_mse(pred: torch.Tensor, target: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
    """Squared error (B, H, A) averaged over the actions that are not padding (``pad`` (B, H), True
    = past the episode's end); float32 even when the network ran under bf16 autocast."""
    err = (pred.float() - target.float()) ** 2
    if pad is None:
        return err.mean()
    valid = (~pad).unsqueeze(-1).to(err.dtype)
    return (err * valid).sum() / (valid.sum() * err.shape[-1]).clamp_min(1.0)


@dataclass
class PolicyConfig:
    """Fields every policy family has. Families subclass this and add their own."""

    n_obs_steps: int = 2
    """Observation frames the policy conditions on (the current one and n-1 before it)."""
    horizon: int = 16
    """Length of the predicted action chunk, starting at the oldest observed frame."""
    n_action_steps: int = 8
    """Actions executed from each chunk before the policy is asked again."""

    def __post_init__(self) -> None:
        if self.n_obs_steps < 1 or self.n_action_steps < 1:
            raise ValueError("n_obs_steps and n_action_steps must be >= 1")
        if self.n_obs_steps - 1 + self.n_action_steps > self.horizon:
            raise ValueError(
                f"n_obs_steps - 1 + n_action_steps = {self.n_obs_steps - 1 + self.n_action_steps} exceeds horizon {self.horizon}"
            )


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

    # --- an optional hook for statistics of the weights themselves ----------------------------
    def calibration_batches(self) -> int:
        """Training batches ``calibrate`` needs (0: nothing to calibrate, the trainer never calls it)."""
        return 0

    def calibrate(self, batches: list[Batch]) -> None:
        """Refit whatever the policy derives from its own weights (e.g. EBT's adaptive-stop energy
        threshold) with the weights it holds now. The trainer calls it on the EMA copy it is about
        to evaluate or save, with ``calibration_batches()`` fixed training batches on the policy's
        device; an implementation leaves the global RNG as it found it. Default: nothing to do."""

    def batch_actions(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The training batch's raw action chunk (B, H, A), checked against the config, and its
        padding mask (B, H) (True = past the episode's end) or None."""
        c = self.config
        if ACTION_KEY not in batch:
            raise ValueError(f"training batch is missing {ACTION_KEY!r}")
        actions = batch[ACTION_KEY]
        if actions.dim() != 3 or actions.shape[1:] != (c.horizon, self.features.action_dim):
            raise ValueError(
                f"batch 'action' must have shape (B, {c.horizon}, {self.features.action_dim}), got {tuple(actions.shape)}"
            )
        pad = batch.get(ACTION_PAD_KEY)
        return actions, None if pad is None else pad.to(torch.bool)

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
