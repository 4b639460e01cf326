"""``ObsSpec``: which raw observation keys a policy reads, their single-frame shapes, and the
checks every consumer of raw observations shares (the local PolicySource, the policy client that
stacks frames on the robot, and the server that receives those stacks).

Torch-free on purpose: the client imports it on a robot computer without torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# The LeRobot names (robopolicy.types holds the same constants but imports torch).
STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."


@dataclass
class ObsSpec:
    """The raw observation a policy consumes."""

    keys: dict[str, tuple[int, ...]]
    """Raw key -> single-frame shape: ``(S,)`` for the state, ``(H, W, C)`` uint8 for a camera."""
    n_obs_steps: int
    """Frames the policy conditions on (the newest one last)."""
    use_language: bool = False
    """Whether every inference needs the task instruction."""

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("ObsSpec: the policy's features name neither a state nor a camera")
        if int(self.n_obs_steps) < 1:
            raise ValueError(f"ObsSpec: n_obs_steps must be >= 1, got {self.n_obs_steps}")
        self.keys = {str(k): tuple(int(x) for x in v) for k, v in self.keys.items()}
        self.n_obs_steps = int(self.n_obs_steps)

    @classmethod
    def from_features(cls, features: Any, n_obs_steps: int) -> "ObsSpec":
        """From a policy's ``FeatureSpec`` (cameras stored as (C, H, W), raw frames are HxWxC)."""
        keys: dict[str, tuple[int, ...]] = {}
        if features.state_dim is not None:
            keys[STATE_KEY] = (int(features.state_dim),)
        for cam, (c, h, w) in features.cameras.items():
            keys[IMAGE_PREFIX + cam] = (int(h), int(w), int(c))
        return cls(keys=keys, n_obs_steps=int(n_obs_steps), use_language=bool(features.use_language))

    def to_dict(self) -> dict[str, Any]:
        return {"keys": {k: list(v) for k, v in self.keys.items()}, "n_obs_steps": self.n_obs_steps,
                "use_language": self.use_language}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ObsSpec":
        try:
            return cls(keys={k: tuple(v) for k, v in d["keys"].items()}, n_obs_steps=d["n_obs_steps"],
                       use_language=bool(d.get("use_language", False)))
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ValueError(f"ObsSpec: malformed spec {d!r}: {e}") from None

    @staticmethod
    def is_image(key: str) -> bool:
        return key.startswith(IMAGE_PREFIX)

    # --- checks -------------------------------------------------------------------------------
    def select(self, raw_obs: Mapping[str, Any], n_envs: int) -> dict[str, np.ndarray]:
        """The spec's keys of one raw observation (single frame or batched), with a leading env
        dim, checked; other keys are ignored (an env may return more than a policy reads)."""
        if not isinstance(raw_obs, Mapping):
            raise ValueError(f"a raw observation must be a dict of arrays, got {type(raw_obs).__name__}")
        out = {}
        for key, frame_shape in self.keys.items():
            if key not in raw_obs:
                raise ValueError(f"raw observation lacks {key!r}, which the policy was trained on; "
                                 f"it has {sorted(raw_obs)} (wrong obs mode for the suite?)")
            v = np.asarray(raw_obs[key])
            if v.shape == frame_shape:
                v = v[None]
            if v.shape[1:] != frame_shape or v.shape[0] != n_envs:
                raise ValueError(f"raw observation {key!r} has shape {v.shape}, expected {frame_shape} "
                                 f"or ({n_envs}, {', '.join(map(str, frame_shape))})")
            if self.is_image(key) and v.dtype != np.uint8:
                raise ValueError(f"raw observation {key!r} is {v.dtype}, expected uint8 HxWx3 pixels")
            out[key] = v
        return out

    def check_window(self, window: Any, n_envs: int | None = None) -> dict[str, np.ndarray]:
        """A stacked observation window ``key -> (B, n_obs_steps, *frame)``, checked strictly
        (exactly the spec's keys, finite states, uint8 images): what the policy server accepts.
        ``n_envs`` None accepts any B >= 1 shared by all keys. Returns float32 states."""
        if not isinstance(window, Mapping):
            raise ValueError(f"'obs' must be a map of key -> array, got {type(window).__name__}")
        missing, extra = sorted(set(self.keys) - set(window)), sorted(set(window) - set(self.keys))
        if missing or extra:
            raise ValueError(f"'obs' keys {sorted(map(str, window))} differ from the policy's {sorted(self.keys)} "
                             f"(missing {missing}, unexpected {extra})")
        out, batch = {}, n_envs
        for key, frame_shape in self.keys.items():
            v = window[key]
            if not isinstance(v, np.ndarray):
                raise ValueError(f"'obs.{key}' is a {type(v).__name__}, expected an array")
            if v.ndim < 2 or batch is None and v.shape[0] < 1:
                raise ValueError(f"'obs.{key}' has shape {v.shape}, expected (B, {self.n_obs_steps}, "
                                 f"{', '.join(map(str, frame_shape))})")
            batch = v.shape[0] if batch is None else batch
            expected = (batch, self.n_obs_steps, *frame_shape)
            if v.shape != expected:
                raise ValueError(f"'obs.{key}' has shape {v.shape}, expected {expected}")
            if self.is_image(key):
                if v.dtype != np.uint8:
                    raise ValueError(f"'obs.{key}' is {v.dtype}, expected uint8 pixels")
            else:
                if v.dtype.kind not in "fiu":
                    raise ValueError(f"'obs.{key}' is {v.dtype}, expected a numeric array")
                v = v.astype(np.float32, copy=False)
                if not np.isfinite(v).all():
                    raise ValueError(f"'obs.{key}' contains non-finite values")
            out[key] = v
        return out

    def check_task(self, task: Any, n_envs: int) -> list[str] | str | None:
        """The instruction(s) of a request: None, one string, or one string per env."""
        if task is None:
            if self.use_language:
                raise ValueError("the policy is language-conditioned: 'task' (the instruction) is required")
            return None
        if isinstance(task, str):
            return task
        if isinstance(task, (list, tuple)) and len(task) == n_envs and all(isinstance(t, str) for t in task):
            return list(task)
        raise ValueError(f"'task' must be a string or a list of {n_envs} strings, got {type(task).__name__}")
