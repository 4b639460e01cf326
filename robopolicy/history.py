"""The observation history a policy conditions on: the last ``n_obs_steps`` raw frames, stacked.

This is the one copy of the logic; the evaluator, the robot control loop and any ActionSource use
it, and policies never keep their own frame queues. Right after ``reset`` the history is padded by
repeating the first frame, which matches how training windows are padded at an episode start
(``delta_timestamps`` clamped to the episode).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


class ObsHistory:
    """Ring buffer of the last ``n_obs_steps`` observations (dicts of arrays).

    With ``batched=True`` (the default) every array has a leading env dim ``B`` and ``stacked()``
    returns ``(B, T, ...)``; with ``batched=False`` arrays are single frames and ``stacked()``
    returns ``(T, ...)``. ``T == n_obs_steps`` and index ``T - 1`` is the newest frame.
    """

    def __init__(self, n_obs_steps: int, batched: bool = True):
        if int(n_obs_steps) < 1:
            raise ValueError(f"n_obs_steps must be >= 1, got {n_obs_steps}")
        self.n_obs_steps = int(n_obs_steps)
        self.batched = bool(batched)
        self._buf: dict[str, np.ndarray] | None = None  # key -> (B, T, ...)
        self._fresh: np.ndarray | None = None  # (B,) bool: envs whose next frame fills their history

    # ------------------------------------------------------------------------------------------
    def reset(self, obs: Mapping[str, np.ndarray] | None = None, env_ids: Iterable[int] | None = None) -> None:
        """Start a new episode; the first frame fills every time slot.

        ``reset(obs)`` starts from ``obs``; ``reset()`` empties the history so that the next
        ``push`` starts it. With ``env_ids`` (batched only) just those envs restart: from the rows
        of the full-batch ``obs`` if given, else from their row of the next ``push``; the other
        envs keep their history.
        """
        if env_ids is None:
            self._buf, self._fresh = None, None
            if obs is not None:
                self.push(obs)
            return
        if not self.batched:
            raise ValueError("ObsHistory.reset: env_ids only applies to a batched history")
        ids = np.asarray(list(env_ids), dtype=np.int64)
        if obs is not None:
            frame = self._as_batch(obs)
            if self._buf is None:
                self.push(obs)
                return
            self._check(frame)
            for k, v in frame.items():
                self._buf[k][ids] = v[ids, None]
            return
        if self._buf is None:
            return  # the whole history is already waiting for its first frame
        n_envs = next(iter(self._buf.values())).shape[0]
        if ids.size and (ids.min() < 0 or ids.max() >= n_envs):
            raise ValueError(f"ObsHistory.reset: env_ids {ids.tolist()} out of range for {n_envs} envs")
        if self._fresh is None:
            self._fresh = np.zeros(n_envs, dtype=bool)
        self._fresh[ids] = True

    def push(self, obs: Mapping[str, np.ndarray]) -> None:
        """Append the newest frame (the oldest one drops out); restarted envs get it in every slot."""
        frame = self._as_batch(obs)
        if self._buf is None:
            self._buf = {k: np.repeat(v[:, None], self.n_obs_steps, axis=1) for k, v in frame.items()}
            return
        self._check(frame)
        for k, v in frame.items():
            buf = self._buf[k]
            # Shift in place: n_obs_steps is tiny (1-4), cheaper than any index bookkeeping.
            buf[:, :-1] = buf[:, 1:]
            buf[:, -1] = v
            if self._fresh is not None:
                buf[self._fresh] = v[self._fresh, None]
        self._fresh = None

    def stacked(self) -> dict[str, np.ndarray]:
        """The history with a time axis (after the env axis when batched); a copy."""
        if self._buf is None:
            raise RuntimeError("ObsHistory.stacked: no observation yet; call reset(obs) or push(obs) first")
        if self.batched:
            return {k: v.copy() for k, v in self._buf.items()}
        return {k: v[0].copy() for k, v in self._buf.items()}

    @property
    def empty(self) -> bool:
        return self._buf is None

    # ------------------------------------------------------------------------------------------
    def _as_batch(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(obs, Mapping) or not obs:
            raise ValueError(f"ObsHistory: an observation must be a non-empty dict of arrays, got {type(obs).__name__}")
        out = {}
        for k, v in obs.items():
            if not isinstance(v, np.ndarray):
                raise ValueError(f"ObsHistory: observation key {k!r} is a {type(v).__name__}, expected np.ndarray")
            if self.batched and v.ndim == 0:
                raise ValueError(f"ObsHistory: batched observation key {k!r} has no leading env dim")
            out[k] = v if self.batched else v[None]
        sizes = {v.shape[0] for v in out.values()}
        if len(sizes) != 1:
            raise ValueError(f"ObsHistory: observation keys disagree on the env dim: "
                             f"{ {k: v.shape for k, v in out.items()} }")
        return out

    def _check(self, frame: Mapping[str, np.ndarray]) -> None:
        assert self._buf is not None
        if set(frame) != set(self._buf):
            raise ValueError(f"ObsHistory: observation keys {sorted(frame)} differ from the episode's "
                             f"first frame {sorted(self._buf)}")
        for k, v in frame.items():
            buf = self._buf[k]
            if v.shape != buf.shape[:1] + buf.shape[2:]:
                raise ValueError(f"ObsHistory: {k!r} has frame shape {v.shape[1:]} with {v.shape[0]} envs, "
                                 f"expected {buf.shape[2:]} with {buf.shape[0]} envs")
