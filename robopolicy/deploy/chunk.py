"""``Chunk``: a timestamped batch of action sequences, the unit every ActionSource returns.

Kept free of torch so the policy client (deploy/client.py) can build chunks on a robot computer
that has only numpy, msgpack and websockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Chunk:
    """A batch of action sequences with the time they were computed for."""

    actions: np.ndarray
    """(B, n, A) float32 actions in raw units; action j is meant for time ``t_obs + j * dt``."""
    t_obs: float
    """Timestamp (seconds, caller's clock) of the newest observation the chunk was computed from."""
    dt: float
    """Control period in seconds between consecutive actions."""
    latency_s: float = 0.0
    """Wall-clock seconds the inference took (observation in -> actions out)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Diagnostics of the call (e.g. the policy state's info)."""

    def __post_init__(self) -> None:
        self.actions = np.asarray(self.actions)
        if self.actions.ndim != 3 or self.actions.shape[1] < 1:
            raise ValueError(f"Chunk.actions must be (B, n>=1, A), got shape {self.actions.shape}")
        if not self.dt > 0:
            raise ValueError(f"Chunk.dt must be > 0 seconds, got {self.dt}")

    @property
    def n_envs(self) -> int:
        return self.actions.shape[0]

    def __len__(self) -> int:
        return self.actions.shape[1]

    def time_of(self, j: int) -> float:
        """When action ``j`` is meant to be executed."""
        return self.t_obs + j * self.dt
