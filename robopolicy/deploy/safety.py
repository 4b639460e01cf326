"""The safety layer between the policy and the robot: action bounds, a per-step change limit, the
hold action the watchdog sends, and a latching emergency stop.

Every command the loop sends passes through ``SafetyLayer``: a policy action is checked for
non-finite values, clipped to the bounds and rate-limited against the previous command; a hold
(stale observations, late inference, a dead server, an emergency stop) is the robot's hold action,
sent at once (not rate-limited: stopping must not be delayed), and the change limit then ramps the
policy's actions back in from it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np


@dataclass
class SafetyConfig:
    """Limits and watchdog settings of the control loop."""

    action_low: Optional[list[float]] = None
    """Lowest command per action dim (one value for all, or one per dim); None: the robot's."""
    action_high: Optional[list[float]] = None
    """Highest command per action dim; None: the robot's."""
    max_delta: Optional[list[float]] = None
    """Largest change of each action dim from one tick to the next (one value or one per dim); None: no limit."""
    hold_action: Optional[list[float]] = None
    """Command that holds the robot still (one value or one per dim); None: zeros (velocity/delta control)."""
    hold_keep_dims: Optional[list[int]] = None
    """Dims a hold keeps at their last value; None: the robot's (e.g. the gripper)."""
    stale_obs_s: Optional[float] = None
    """Hold when the newest observation is older than this (seconds); None: 3 control periods."""
    stale_stop_s: Optional[float] = 2.0
    """End the run (emergency stop) after observations stayed stale this long; None: hold indefinitely."""
    estop_file: Optional[str] = None
    """Emergency stop as soon as this file exists (``touch`` it from another shell); None: off."""


def _per_dim(value: Any, a_dim: int, name: str) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.size == 1:
        v = np.full(a_dim, float(v[0]))
    if v.shape != (a_dim,):
        raise ValueError(f"safety.{name} has {v.size} values, expected 1 or {a_dim} (the action size)")
    if not np.isfinite(v).all():
        raise ValueError(f"safety.{name} must be finite, got {v.tolist()}")
    return v


class SafetyLayer:
    """Turns policy actions into safe commands; counts what it changed (``stats``)."""

    def __init__(self, cfg: SafetyConfig, low: np.ndarray, high: np.ndarray,
                 hold_keep_dims: tuple[int, ...] = ()):
        """``low``/``high``: the robot's bounds (used where ``cfg`` leaves them None)."""
        a_dim = int(np.asarray(low).size)
        self.cfg = cfg
        self.low = _per_dim(cfg.action_low if cfg.action_low is not None else low, a_dim, "action_low")
        self.high = _per_dim(cfg.action_high if cfg.action_high is not None else high, a_dim, "action_high")
        if (self.low > self.high).any():
            raise ValueError(f"safety: action_low {self.low.tolist()} exceeds action_high {self.high.tolist()}")
        self.max_delta = None if cfg.max_delta is None else _per_dim(cfg.max_delta, a_dim, "max_delta")
        if self.max_delta is not None and (self.max_delta <= 0).any():
            raise ValueError(f"safety.max_delta must be > 0, got {self.max_delta.tolist()}")
        hold = np.zeros(a_dim) if cfg.hold_action is None else _per_dim(cfg.hold_action, a_dim, "hold_action")
        self.hold_value = np.clip(hold, self.low, self.high)
        keep = cfg.hold_keep_dims if cfg.hold_keep_dims is not None else hold_keep_dims
        for d in keep:
            if not -a_dim <= int(d) < a_dim:
                raise ValueError(f"safety.hold_keep_dims: {d} is not an action dim (action size {a_dim})")
        self.keep = np.zeros(a_dim, dtype=bool)
        self.keep[[int(d) for d in keep]] = True
        self.a_dim = a_dim
        self.reset()

    def reset(self) -> None:
        self.last: np.ndarray | None = None
        """The previous command sent (None before the first)."""
        self.stats: Counter[str] = Counter()
        """``clipped`` / ``rate_limited`` commands and ``hold:<reason>`` ticks."""

    def filter(self, action: np.ndarray) -> tuple[np.ndarray, str | None]:
        """The safe command for a policy action, and a hold reason if it had to be replaced."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self.a_dim,):
            raise ValueError(f"safety: the policy's action has {a.size} values, the robot takes {self.a_dim}")
        if not np.isfinite(a).all():
            return self.hold("non_finite"), "non_finite"
        out = np.clip(a, self.low, self.high)
        if not np.array_equal(out, a):
            self.stats["clipped"] += 1
        if self.max_delta is not None and self.last is not None:
            limited = np.clip(out, self.last - self.max_delta, self.last + self.max_delta)
            if not np.array_equal(limited, out):
                self.stats["rate_limited"] += 1
            out = limited
        self.last = out
        return out.astype(np.float32), None

    def hold(self, reason: str) -> np.ndarray:
        """The command that holds the robot still (``hold_keep_dims`` keep their last value)."""
        out = self.hold_value.copy()
        if self.last is not None:
            out[self.keep] = self.last[self.keep]
        self.stats[f"hold:{reason}"] += 1
        self.last = out
        return out.astype(np.float32)


class EmergencyStop:
    """A latching stop: once triggered (``trigger``, the stop file, or Ctrl-C after
    ``install_sigint``) the loop holds the robot and ends the run. Thread-safe."""

    def __init__(self, file: str | None = None):
        self.file = file
        self._event = threading.Event()
        self.reason: str | None = None

    def trigger(self, reason: str = "manual") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def check(self) -> str | None:
        """The stop reason if stopped (checks the stop file), else None."""
        if not self._event.is_set() and self.file is not None and os.path.exists(self.file):
            self.trigger(f"stop file {self.file} exists")
        return self.reason if self._event.is_set() else None

    def install_sigint(self) -> Any:
        """Make the first Ctrl-C an emergency stop (a second one interrupts as usual); returns the
        previous handler (restore it with ``signal.signal(signal.SIGINT, previous)``), or None
        off the main thread, where Python cannot install signal handlers."""
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            if self._event.is_set():
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self.trigger("Ctrl-C")

        signal.signal(signal.SIGINT, handler)
        return previous
