"""Turning action chunks into one action per control step: sync, temporal ensemble, async.

Time is explicit: every call takes ``now`` (seconds), ``step * dt`` in simulation or a monotonic
clock on a robot, so the same scheduler runs in both and is testable without sleeping. Action
``j`` of a chunk belongs to the control slot centred on ``chunk.t_obs + j * chunk.dt``, i.e. the
half-open interval ``[t - dt/2, t + dt/2)``; half-period slot edges make ``step * dt`` float
round-off harmless.

A scheduler works on the whole env batch at once: chunks are ``(B, n, A)``, actions ``(B, A)``.
It does not know whether a request is in flight: a caller that infers asynchronously waits for
its pending chunk before asking ``needs_inference`` again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from robopolicy.deploy.action_source import Chunk
from robopolicy.registry import get, register


@runtime_checkable
class ChunkScheduler(Protocol):
    def needs_inference(self, now: float) -> bool:
        """Whether a new chunk should be requested at time ``now``."""
        ...

    def push(self, chunk: Chunk, now: float) -> None:
        """Hand over a chunk that arrived at time ``now``."""
        ...

    def next_action(self, now: float) -> np.ndarray | None:
        """The ``(B, A)`` action to execute at ``now``, or None if the scheduler has run dry."""
        ...

    def reset(self) -> None:
        """Forget every chunk (new episode)."""
        ...


def _slot(now: float, t0: float, dt: float) -> int:
    """Index of the chunk action whose control slot contains ``now`` (may be < 0 or past the end)."""
    return math.floor((now - t0) / dt + 0.5)


def _check_chunk(chunk: Chunk, n_action_steps: int | None, like: np.ndarray | None) -> np.ndarray:
    actions = chunk.actions if n_action_steps is None else chunk.actions[:, :n_action_steps]
    if like is not None and (actions.shape[0], actions.shape[2]) != (like.shape[0], like.shape[2]):
        raise ValueError(f"chunk of {actions.shape[0]} envs x {actions.shape[2]} action dims does not match the "
                         f"previous chunk's {like.shape[0]} x {like.shape[2]}; reset() between episodes")
    return actions


@register("scheduler", "sync")
@dataclass
class SyncScheduler:
    """Execute the first ``n_action_steps`` actions of a chunk, one per call, then ask again.

    Ignores time: this is the classic Diffusion Policy / LeRobot loop, where inference blocks the
    control loop (in simulation it always does)."""

    n_action_steps: int | None = None
    """Actions executed from each chunk before the next request; None: the whole chunk."""

    def __post_init__(self) -> None:
        if self.n_action_steps is not None and self.n_action_steps < 1:
            raise ValueError(f"SyncScheduler.n_action_steps must be >= 1 or None, got {self.n_action_steps}")
        self.reset()

    def reset(self) -> None:
        self._actions: np.ndarray | None = None
        self._next = 0

    def needs_inference(self, now: float) -> bool:
        return self._actions is None or self._next >= self._actions.shape[1]

    def push(self, chunk: Chunk, now: float) -> None:
        self._actions = _check_chunk(chunk, self.n_action_steps, self._actions)
        self._next = 0

    def next_action(self, now: float) -> np.ndarray | None:
        if self.needs_inference(now):
            return None
        assert self._actions is not None
        action = self._actions[:, self._next]
        self._next += 1
        return action


@register("scheduler", "ensemble")
@dataclass
class TemporalEnsembleScheduler:
    """ACT's temporal ensembling: a chunk every step; the action for ``now`` averages what every
    stored chunk predicted for that slot, the ``i``-th oldest prediction weighted ``exp(-coeff*i)``.

    ``coeff > 0`` trusts older predictions more (ACT's choice: smoother, slower to react);
    ``coeff < 0`` trusts newer ones; 0 is a plain mean."""

    coeff: float = 0.01
    """ACT's ``k``: weight ``exp(-coeff * i)`` of the ``i``-th oldest chunk covering the slot."""
    n_action_steps: int | None = None
    """How many actions of each chunk take part; None: the whole chunk."""
    stats: dict[str, int] = field(default_factory=dict, init=False)
    """Counters: ``chunks`` pushed, ``actions`` returned, ``ensembled`` (slots with >1 chunk)."""

    def __post_init__(self) -> None:
        if self.n_action_steps is not None and self.n_action_steps < 1:
            raise ValueError(f"TemporalEnsembleScheduler.n_action_steps must be >= 1 or None, "
                             f"got {self.n_action_steps}")
        self.reset()

    def reset(self) -> None:
        self._chunks: list[tuple[float, float, np.ndarray]] = []  # (t_obs, dt, actions), oldest first
        self._last_push: float | None = None
        self.stats = {"chunks": 0, "actions": 0, "ensembled": 0}

    def needs_inference(self, now: float) -> bool:
        # One chunk per control period: ask unless a chunk arrived within this period.
        if self._last_push is None or not self._chunks:
            return True
        return now - self._last_push >= 0.5 * self._chunks[-1][1]

    def push(self, chunk: Chunk, now: float) -> None:
        like = self._chunks[-1][2] if self._chunks else None
        self._chunks.append((chunk.t_obs, chunk.dt, _check_chunk(chunk, self.n_action_steps, like)))
        self._last_push = now
        self.stats["chunks"] += 1

    def weights(self, n: int) -> np.ndarray:
        """Normalized weights of ``n`` predictions of one slot, oldest first."""
        w = np.exp(-self.coeff * np.arange(n, dtype=np.float64))
        return w / w.sum()

    def next_action(self, now: float) -> np.ndarray | None:
        # Drop chunks whose last action's slot has ended; they can never contribute again.
        self._chunks = [c for c in self._chunks if _slot(now, c[0], c[1]) < c[2].shape[1]]
        preds = [a[:, j] for t0, dt, a in self._chunks if 0 <= (j := _slot(now, t0, dt)) < a.shape[1]]
        if not preds:
            return None
        w = self.weights(len(preds))
        action = np.tensordot(w, np.stack(preds).astype(np.float64), axes=1).astype(preds[0].dtype)
        self.stats["actions"] += 1
        self.stats["ensembled"] += int(len(preds) > 1)
        return action


@register("scheduler", "async")
@dataclass
class AsyncScheduler:
    """Inference overlaps execution: a new chunk is requested while the current one still has
    ``threshold`` actions left, and when it arrives it replaces the rest of the current one from
    the slot of ``now`` on. Actions are aligned by the chunk's observation time, so the actions
    whose slot passed during inference are skipped (they were planned for a state now gone).

    Executing never runs dry if ``threshold >= latency / dt + 1``."""

    threshold: int | None = None
    """Request the next chunk when fewer than this many actions (counting the current slot's)
    remain; None: half of the chunk actions used."""
    n_action_steps: int | None = None
    """How many actions of each chunk may be executed; None: the whole chunk."""
    stats: dict[str, int] = field(default_factory=dict, init=False)
    """Counters: ``chunks`` pushed, ``skipped`` stale actions, ``dropped`` chunks stale on arrival."""

    def __post_init__(self) -> None:
        for name in ("threshold", "n_action_steps"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"AsyncScheduler.{name} must be >= 1 or None, got {v}")
        self.reset()

    def reset(self) -> None:
        self._t0 = 0.0
        self._dt = 1.0
        self._actions: np.ndarray | None = None
        self._next = 0  # first action not yet executed or skipped
        self.stats = {"chunks": 0, "skipped": 0, "dropped": 0}

    def remaining(self, now: float) -> int:
        """Actions of the current chunk from the slot of ``now`` on (the current one included)."""
        if self._actions is None:
            return 0
        n = self._actions.shape[1]
        return max(0, n - max(self._next, _slot(now, self._t0, self._dt)))

    def needs_inference(self, now: float) -> bool:
        if self._actions is None:
            return True
        threshold = self.threshold if self.threshold is not None else max(1, self._actions.shape[1] // 2)
        return self.remaining(now) < threshold

    def push(self, chunk: Chunk, now: float) -> None:
        actions = _check_chunk(chunk, self.n_action_steps, self._actions)
        self.stats["chunks"] += 1
        first = max(0, _slot(now, chunk.t_obs, chunk.dt))  # slots before now's have passed
        if first >= actions.shape[1]:
            # Slower than the whole chunk: keep executing the old one rather than nothing.
            self.stats["dropped"] += 1
            return
        self._t0, self._dt, self._actions = chunk.t_obs, chunk.dt, actions
        self._next = first
        self.stats["skipped"] += first

    def next_action(self, now: float) -> np.ndarray | None:
        """Consume the action of ``now``'s slot; call once per control period (a second call in
        the same slot returns the following action, never one whose slot has passed)."""
        if self._actions is None:
            return None
        j = max(self._next, _slot(now, self._t0, self._dt))
        if j >= self._actions.shape[1]:
            return None
        # Slots a slow caller missed between two calls count as skipped too.
        self.stats["skipped"] += j - self._next
        self._next = j + 1
        return self._actions[:, j]


def make_scheduler(name: str, **kwargs) -> ChunkScheduler:
    """Build a registered scheduler by name (``sync`` | ``ensemble`` | ``async``) with its fields."""
    try:
        cls = get("scheduler", name)
    except KeyError as e:
        raise ValueError(str(e).strip("'\"")) from None
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"scheduler {name!r}: {e}") from None
