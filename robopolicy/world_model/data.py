"""Transitions for world-model training, read from a play dataset (LeRobotDataset v3.0).

``Episodes`` holds a dataset's per-frame arrays (state, action, reward fields) and episode bounds;
``TransitionWindows`` turns them into training items: for frame t, the states t-T+1..t (the first
frame repeats before the episode start), the actions t-T+1..t+K-1 (padding flagged), the next
states t+1..t+K (flagged past the episode end: the last frame has no recorded next state) and the
frame's ``next.reward`` / ``next.success`` / ``next.done``.

Camera frames (image world models): ``load_episodes(root, camera_keys=[...])`` also keeps those
cameras' frames, uint8 (N, C, H, W) as decoded by ``LeRobotDataset`` (stored once, 1 byte per
pixel); the windows then carry ``observation.images.<camera>`` (T, C, H, W) at the same history rows
as the states and ``next.observation.images.<camera>`` (K, C, H, W) at the next-state rows (same
``next.observation.state_is_pad`` flags), float32 in [0, 1] like ``LeRobotDataset`` items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from robopolicy.types import ACTION_KEY, ACTION_PAD_KEY, IMAGE_PREFIX, STATE_KEY
from robopolicy.world_model.play import DONE_KEY, REWARD_KEY, SUCCESS_KEY

NEXT_STATE_KEY = "next." + STATE_KEY
NEXT_STATE_PAD_KEY = NEXT_STATE_KEY + "_is_pad"
REWARD_FIELDS = (REWARD_KEY, SUCCESS_KEY, DONE_KEY)


def next_key(key: str) -> str:
    """The batch key of a feature's next frames: ``next.<key>``."""
    return "next." + key


@dataclass
class Episodes:
    """Per-frame arrays of a set of episodes, concatenated in order."""

    states: np.ndarray
    """(N, S) float32 observation.state."""
    actions: np.ndarray
    """(N, A) float32 actions taken at each frame."""
    rewards: np.ndarray
    """(N,) float32 next.reward."""
    success: np.ndarray
    """(N,) bool next.success."""
    done: np.ndarray
    """(N,) bool next.done."""
    bounds: np.ndarray
    """(E, 2) [start, end) rows of each episode."""
    episode_index: np.ndarray
    """(E,) the dataset's index of each episode."""
    stats: dict[str, Any] | None = None
    """The dataset's statistics (stats.json, exact action quantiles)."""
    fps: float = 10.0
    """Dataset frame rate."""
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    """Camera key (``observation.images.<camera>``) -> (N, C, H, W) uint8 frames; empty for state models."""

    @property
    def num_episodes(self) -> int:
        return len(self.bounds)

    def episode(self, j: int) -> dict[str, np.ndarray]:
        a, b = self.bounds[j]
        out = {"states": self.states[a:b], "actions": self.actions[a:b], "rewards": self.rewards[a:b],
               "success": self.success[a:b], "done": self.done[a:b]}
        out.update({k: v[a:b] for k, v in self.frames.items()})
        return out

    def episode_success(self) -> np.ndarray:
        """(E,) whether each episode reported success at some step."""
        return np.array([bool(self.success[a:b].any()) for a, b in self.bounds])


def concat_episodes(parts: Sequence[Episodes]) -> Episodes:
    """Several datasets' episodes as one set (e.g. noisy-expert play data + policy rollouts); the
    statistics and fps are the first part's (its normalization is the model's)."""
    if not parts:
        raise ValueError("concat_episodes: nothing to concatenate")
    keys = set(parts[0].frames)
    for e in parts[1:]:
        if set(e.frames) != keys or e.states.shape[1:] != parts[0].states.shape[1:] \
                or e.actions.shape[1:] != parts[0].actions.shape[1:]:
            raise ValueError("concat_episodes: the datasets differ in their state, action or camera features")
    offsets = np.cumsum([0] + [len(e.states) for e in parts[:-1]])
    cat = np.concatenate
    return Episodes(
        states=cat([e.states for e in parts]), actions=cat([e.actions for e in parts]),
        rewards=cat([e.rewards for e in parts]), success=cat([e.success for e in parts]),
        done=cat([e.done for e in parts]), bounds=cat([e.bounds + o for e, o in zip(parts, offsets)]),
        episode_index=cat([e.episode_index for e in parts]), stats=parts[0].stats, fps=parts[0].fps,
        frames={k: cat([e.frames[k] for e in parts]) for k in keys},
    )


def load_episodes(root: str | Path, episodes: Sequence[int] | None = None,
                  camera_keys: Sequence[str] = ()) -> Episodes:
    """Read a play dataset's episodes (with the frames of ``camera_keys``, full keys such as
    ``observation.images.top``); a dataset without reward fields (plain demonstrations) is refused
    with the command that records play data."""
    from robopolicy.data import LeRobotDataset

    camera_keys = list(camera_keys)
    bad = [k for k in camera_keys if not k.startswith(IMAGE_PREFIX)]
    if bad:
        raise ValueError(f"load_episodes: camera keys must start with {IMAGE_PREFIX!r}, got {bad}")
    ds = LeRobotDataset(root, episodes=episodes, camera_keys=camera_keys)
    missing = [k for k in (STATE_KEY, ACTION_KEY, *REWARD_FIELDS) if k not in ds.features]
    if missing:
        raise ValueError(
            f"{root}: dataset has no {missing} feature(s); a world model learns from play data with rewards: "
            f"record it with robopolicy-train-wm (or robopolicy.world_model.record_play_dataset)"
        )
    col = ds.column
    episode_col = col("episode_index")
    bounds = ds.episode_bounds.astype(np.int64)
    return Episodes(
        states=np.array(col(STATE_KEY), dtype=np.float32).reshape(len(ds), -1),
        actions=np.array(col(ACTION_KEY), dtype=np.float32).reshape(len(ds), -1),
        rewards=np.array(col(REWARD_KEY), dtype=np.float32).reshape(-1),
        success=np.asarray(col(SUCCESS_KEY)).astype(bool).reshape(-1),
        done=np.asarray(col(DONE_KEY)).astype(bool).reshape(-1),
        bounds=bounds,
        episode_index=np.asarray(episode_col[bounds[:, 0]], dtype=np.int64),
        stats=ds.training_stats(),
        fps=float(ds.fps),
        frames={k: _uint8_frames(ds, k) for k in camera_keys},
    )


def _uint8_frames(ds, key: str) -> np.ndarray:
    """Every loaded frame of camera ``key`` (N, C, H, W) uint8, through the dataset's items (float32
    k/255, so rounding back is exact); the dataset decodes and caches a whole episode at a time."""
    first = ds[0][key]
    out = np.empty((len(ds), *first.shape), dtype=np.uint8)
    for i in range(len(ds)):
        out[i] = np.rint(ds[i][key].numpy() * 255.0)
    return out


def _float_frames(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.true_divide(frames, np.float32(255), dtype=np.float32))


class TransitionWindows(torch.utils.data.Dataset):
    """One training item per frame (see the module docstring)."""

    def __init__(self, episodes: Episodes, n_history: int, n_future: int = 1):
        if n_history < 1 or n_future < 1:
            raise ValueError(f"TransitionWindows: n_history and n_future must be >= 1, got {n_history}, {n_future}")
        self.ep, self.T, self.K = episodes, int(n_history), int(n_future)
        n = len(episodes.states)
        start = np.zeros(n, dtype=np.int64)
        end = np.zeros(n, dtype=np.int64)
        for a, b in episodes.bounds:
            start[a:b], end[a:b] = a, b
        # every item's row indices and padding flags, computed once: an item is then pure indexing
        rows = np.arange(n)[:, None]
        s, e = start[:, None], end[:, None]
        self._hist = np.clip(rows + np.arange(-self.T + 1, 1), s, e - 1)
        acts = rows + np.arange(-self.T + 1, self.K)
        self._act_pad = (acts < s) | (acts >= e)
        self._acts = np.clip(acts, s, e - 1)
        nxt = rows + np.arange(1, self.K + 1)
        self._next_pad = nxt >= e
        self._next = np.clip(nxt, s, e - 1)
        self._scalars = np.stack([episodes.rewards, episodes.success, episodes.done], axis=1).astype(np.float32)

    def __len__(self) -> int:
        return len(self.ep.states)

    def _frames(self, hist: np.ndarray, nxt: np.ndarray) -> dict[str, torch.Tensor]:
        out = {}
        for key, frames in self.ep.frames.items():
            out[key] = _float_frames(frames[hist])
            out[next_key(key)] = _float_frames(frames[nxt])
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        i = int(i)
        ep, sc = self.ep, self._scalars[i]
        return {
            **self._frames(self._hist[i], self._next[i]),
            STATE_KEY: torch.from_numpy(ep.states[self._hist[i]]),
            ACTION_KEY: torch.from_numpy(ep.actions[self._acts[i]]),
            ACTION_PAD_KEY: torch.from_numpy(self._act_pad[i]),
            NEXT_STATE_KEY: torch.from_numpy(ep.states[self._next[i]]),
            NEXT_STATE_PAD_KEY: torch.from_numpy(self._next_pad[i]),
            REWARD_KEY: torch.tensor(sc[0]),
            SUCCESS_KEY: torch.tensor(sc[1]),
            DONE_KEY: torch.tensor(sc[2]),
        }

    def batch(self, indices) -> dict[str, torch.Tensor]:
        """The items at ``indices`` already stacked (what a DataLoader would collate), in one go."""
        idx = np.asarray(indices, dtype=np.int64)
        ep, sc = self.ep, self._scalars[idx]
        return {
            **self._frames(self._hist[idx], self._next[idx]),
            STATE_KEY: torch.from_numpy(ep.states[self._hist[idx]]),
            ACTION_KEY: torch.from_numpy(ep.actions[self._acts[idx]]),
            ACTION_PAD_KEY: torch.from_numpy(self._act_pad[idx]),
            NEXT_STATE_KEY: torch.from_numpy(ep.states[self._next[idx]]),
            NEXT_STATE_PAD_KEY: torch.from_numpy(self._next_pad[idx]),
            REWARD_KEY: torch.from_numpy(sc[:, 0].copy()),
            SUCCESS_KEY: torch.from_numpy(sc[:, 1].copy()),
            DONE_KEY: torch.from_numpy(sc[:, 2].copy()),
        }
