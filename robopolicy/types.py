"""The typed currency passed between datasets, policies, the trainer, the evaluator and the robot.

Conventions (the same names LeRobot uses, so datasets and users can switch):

* ``Obs`` is a dict. Inside a policy (batched, normalized only by the policy itself):
  - ``"observation.state"``: float tensor ``(B, T_obs, S)``
  - ``"observation.images.<camera>"``: float tensor ``(B, T_obs, 3, H, W)`` in ``[0, 1]``
  - ``"task"``: ``list[str]`` of length ``B`` (natural-language instruction), optional
* ``Batch`` is an ``Obs`` plus ``"action"`` ``(B, H, A)`` in raw units and ``"action_is_pad"``
  ``(B, H)`` bool (True where the window ran past the episode end); co-training batches also carry
  ``"action_is_valid"`` ``(B,)`` bool (False = an action-free, video-only sample: no action loss).
* A *chunk* is a float tensor ``(B, n_action_steps, A)`` of actions in raw (unnormalized) units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

Obs = dict[str, Any]
Batch = dict[str, Any]

STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."
ACTION_KEY = "action"
ACTION_PAD_KEY = ACTION_KEY + "_is_pad"
ACTION_VALID_KEY = ACTION_KEY + "_is_valid"  # (B,) bool per sample; False = action-free (video-only) sample
TASK_KEY = "task"


@dataclass
class FeatureSpec:
    """Shapes a policy is built for, read from a dataset's ``meta/info.json`` (never typed in YAML)."""

    action_dim: int
    """Width of the action vector."""
    state_dim: int | None = None
    """Width of ``observation.state``; None when the policy sees no state."""
    cameras: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Camera name (without the ``observation.images.`` prefix) -> (C, H, W)."""
    fps: float = 10.0
    """Dataset frame rate; converts frame offsets to ``delta_timestamps``."""
    use_language: bool = False
    """Whether the policy is conditioned on the task instruction."""

    def to_dict(self) -> dict:
        return {
            "action_dim": self.action_dim,
            "state_dim": self.state_dim,
            "cameras": {k: list(v) for k, v in self.cameras.items()},
            "fps": self.fps,
            "use_language": self.use_language,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        return cls(
            action_dim=int(d["action_dim"]),
            state_dim=None if d.get("state_dim") is None else int(d["state_dim"]),
            cameras={k: tuple(int(x) for x in v) for k, v in d.get("cameras", {}).items()},
            fps=float(d.get("fps", 10.0)),
            use_language=bool(d.get("use_language", False)),
        )

    @property
    def image_keys(self) -> list[str]:
        return [IMAGE_PREFIX + c for c in self.cameras]


@dataclass
class PolicyState:
    """What a policy carries from one ``act`` call to the next, explicit and never hidden in the
    module: a streaming buffer, a warm start, ... ``reset`` is ``policy.init_state(batch_size)``."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    """Named tensors (e.g. the partially denoised action buffer and its per-slot noise levels)."""
    step: int = 0
    """Number of ``act`` calls since the state was created."""
    info: dict[str, Any] = field(default_factory=dict)
    """Diagnostics of the last call (e.g. denoiser evaluations, final energy)."""
