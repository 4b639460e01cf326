"""What every world model offers the imagined env (``WorldModelVectorEnv``) and the trainer.

A world model is an ``nn.Module`` that the shared Trainer trains through ``loss(batch)`` and the
imagined env steps through three calls, batched over envs:

* ``init_rollout(obs)``: the imagination state of B episodes from their real first observations
  (raw units, the env's observation dict with a leading batch axis);
* ``step(rollout, action)``: one imagined step for every env from raw actions (B, A): the next
  observation dict, the reward, the success and termination probabilities, the new state;
* ``observation_keys``: the observation entries it predicts (``observation.state``; an image model
  adds its cameras).

The state model (``state_model.py``) and the image model (``image_model.py``: the next camera
frame and state through the shared DiT) implement it; both plug into the same imagined env.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from robopolicy.types import FeatureSpec


@dataclass
class RolloutState:
    """What a world model carries from one imagined step to the next (explicit, never hidden)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    """Named history tensors with a leading batch axis (e.g. normalized past states and actions)."""
    step: int = 0
    """Imagined steps taken since ``init_rollout``."""


@dataclass
class StepOutput:
    """One imagined step of B envs."""

    obs: dict[str, torch.Tensor]
    """Next observation per key, raw units, leading batch axis."""
    reward: torch.Tensor
    """(B,) predicted dense reward (raw units)."""
    success: torch.Tensor
    """(B,) predicted probability that the task reports success after this step."""
    done: torch.Tensor
    """(B,) predicted probability that the episode ends after this step."""


class WorldModel(nn.Module):
    """Base class; see the module docstring."""

    registry_name: ClassVar[str] = ""
    checkpoint_meta: ClassVar[dict[str, Any]] = {"kind": "world_model"}
    """Written into the checkpoint's meta.json, so loaders can tell a world model from a policy."""

    def __init__(self, config: Any, features: FeatureSpec):
        super().__init__()
        self.config = config
        self.features = features

    @property
    def observation_keys(self) -> list[str]:
        raise NotImplementedError

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def init_rollout(self, obs: dict[str, torch.Tensor]) -> RolloutState:
        raise NotImplementedError

    def step(self, rollout: RolloutState, action: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[StepOutput, RolloutState]:
        raise NotImplementedError
