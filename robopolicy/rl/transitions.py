"""Training batches from imagined episodes, in the format ``LeRobotDataset`` gives a policy.

For the sample at step t of an episode, every key of ``policy.delta_timestamps()`` reads the rows
``t + offset`` (offsets in frames), clamped to the episode's rows ``[0, end)`` and flagged in
``<key>_is_pad`` where they fall outside, exactly as ``LeRobotDataset.__getitem__`` does for a
recorded episode: observation history windows (the first frame repeats before the start) and action
chunks (padding flagged past the end). Cameras become (T, C, H, W) float in [0, 1]; ``task`` is the
instruction. Any family's own ``loss(batch)`` trains on these batches unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robopolicy.rl.collect import Rollouts
from robopolicy.types import ACTION_KEY, IMAGE_PREFIX, STATE_KEY, TASK_KEY


class ImaginedTransitions:
    """Samples (episode, step) of ``rollouts`` with a weight each; ``batch(idx)`` builds a batch."""

    def __init__(self, rollouts: Rollouts, delta_timestamps: dict[str, list[float]], fps: float,
                 weights: np.ndarray | None = None):
        """``weights`` (E, T): each step's sample weight (default: 1 on the counted steps); only the
        steps with a positive weight become samples."""
        self.r = rollouts
        self.offsets: dict[str, np.ndarray] = {}
        for key, secs in delta_timestamps.items():
            if key != ACTION_KEY and key != STATE_KEY and not key.startswith(IMAGE_PREFIX):
                raise ValueError(f"imagined transitions: the policy asks for {key!r}, which a world model's "
                                 f"episodes do not hold (they have {ACTION_KEY}, {STATE_KEY} and cameras)")
            if key != ACTION_KEY and key not in rollouts.obs:
                raise ValueError(f"imagined transitions: the policy reads {key!r}, the world model predicts "
                                 f"{sorted(rollouts.obs)}")
            self.offsets[key] = np.round(np.asarray(secs, dtype=np.float64) * float(fps)).astype(np.int64)
        w = rollouts.valid.astype(np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != rollouts.valid.shape:
            raise ValueError(f"imagined transitions: weights must have shape {rollouts.valid.shape}, got {w.shape}")
        w = np.where(rollouts.valid, w, 0.0)
        self.episode, self.step = np.nonzero(w > 0)
        self.weights = w[self.episode, self.step]

    def __len__(self) -> int:
        return int(len(self.episode))

    def sample(self, n: int, generator: torch.Generator | None = None) -> np.ndarray:
        """``n`` sample indices drawn with replacement in proportion to their weights."""
        if len(self) == 0:
            raise ValueError("imagined transitions: no sample has a positive weight")
        p = torch.as_tensor(self.weights, dtype=torch.float64)
        return torch.multinomial(p, n, replacement=True, generator=generator).numpy()

    def batch(self, idx: np.ndarray, device: torch.device | str = "cpu") -> dict[str, Any]:
        idx = np.asarray(idx, dtype=np.int64)
        e, t = self.episode[idx], self.step[idx]
        end = self.r.end[e]
        out: dict[str, Any] = {}
        for key, off in self.offsets.items():
            want = t[:, None] + off[None, :]
            rows = np.clip(want, 0, end[:, None] - 1)
            pad = (want < 0) | (want >= end[:, None])
            if key == ACTION_KEY:
                arr = torch.from_numpy(self.r.actions[e[:, None], rows])
            elif key.startswith(IMAGE_PREFIX):  # (B, T, H, W, C) uint8 -> (B, T, C, H, W) in [0, 1]
                frames = self.r.obs[key][e[:, None], rows]
                arr = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float().div_(255.0)
            else:
                arr = torch.from_numpy(self.r.obs[key][e[:, None], rows].astype(np.float32))
            out[key] = arr.to(device)
            out[f"{key}_is_pad"] = torch.from_numpy(pad).to(device)
        out[TASK_KEY] = [self.r.instructions[int(i)] for i in e]
        return out
