"""Stand-ins for the deploy tests: a robot that records what it was sent, and action sources that
are slow, fail, or encode the time each action is meant for (robopolicy.deploy.testing has more)."""

from __future__ import annotations

import time

import numpy as np

from robopolicy.deploy import Chunk, RealClock
from robopolicy.deploy.robot import RobotObservation
from robopolicy.types import STATE_KEY


class RecordingRobot:
    """A robot with a 2-d action in [-1, 1] and no physics: records (time, command) of every apply."""

    def __init__(self, clock=None, a_dim: int = 2, state_dim: int = 4, hold_keep_dims=(),
                 apply_sleep: dict[int, float] | None = None):
        self.clock = clock if clock is not None else RealClock()
        self.state_dim = state_dim
        self.action_low = -np.ones(a_dim, np.float32)
        self.action_high = np.ones(a_dim, np.float32)
        self.hold_keep_dims = tuple(hold_keep_dims)
        self.instruction = "do the thing"
        self.sent: list[tuple[float, np.ndarray]] = []
        self.apply_sleep = apply_sleep or {}  # apply index -> seconds the call blocks
        self.closed = False

    def reset(self, seed=None):
        self.sent.clear()
        return self.observe()

    def observe(self):
        state = np.zeros(self.state_dim, np.float32)
        state[0] = len(self.sent)
        return RobotObservation({STATE_KEY: state}, self.clock.now())

    def apply(self, action):
        self.sent.append((self.clock.now(), np.asarray(action, np.float32).copy()))
        if len(self.sent) - 1 in self.apply_sleep:
            time.sleep(self.apply_sleep[len(self.sent) - 1])

    def close(self):
        self.closed = True

    @property
    def commands(self) -> np.ndarray:
        return np.stack([a for _, a in self.sent])


class ClockSource:
    """Chunks whose action j is ``[t_obs + j * dt, chunk id]``: what a robot executes at time t
    tells which chunk and slot it came from. ``latency_s`` of sleep per infer."""

    def __init__(self, dt: float, n: int = 8, latency_s: float = 0.0):
        self.dt, self.n, self.latency_s = dt, n, latency_s
        self.calls = 0
        self.observed = 0

    def reset(self):
        self.calls = 0

    def observe(self, raw_obs):
        self.observed += 1

    def infer(self, raw_obs, task=None, t_obs=None):
        start = time.perf_counter()
        time.sleep(self.latency_s)
        self.calls += 1
        a = np.zeros((1, self.n, 2), np.float32)
        a[0, :, 0] = t_obs + self.dt * np.arange(self.n)
        a[0, :, 1] = self.calls
        # Values are times (seconds since the clock started, < 1 here), within the robot's bounds.
        return Chunk(actions=a, t_obs=t_obs, dt=self.dt, latency_s=time.perf_counter() - start)


class FlakySource:
    """Wraps a source; ``infer`` raises ``error`` on the calls listed in ``fail_calls``."""

    def __init__(self, inner, fail_calls, error=ConnectionError("server gone")):
        self.inner, self.fail_calls, self.error = inner, set(fail_calls), error
        self.calls = 0

    def reset(self):
        self.inner.reset()

    def observe(self, raw_obs):
        self.inner.observe(raw_obs)

    def infer(self, raw_obs, task=None, t_obs=None):
        self.calls += 1
        if self.calls in self.fail_calls:
            self.inner.observe(raw_obs)  # a client records the frame before the request fails
            raise self.error
        return self.inner.infer(raw_obs, task=task, t_obs=t_obs)
