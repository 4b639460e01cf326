"""The robot interface the control loop drives, and ``SimRobot``, a simulated robot over our suites.

A robot is four calls (``reset`` / ``observe`` / ``apply`` / ``close``) and a few facts about its
actions. ``observe`` returns the newest observation with the time it was captured, on the loop
clock (``time.monotonic()`` on real hardware): the loop uses that timestamp to align action chunks
and its watchdog uses the observation's age. See docs/deploy.md for a real-hardware template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from robopolicy.deploy.clock import RealClock


@dataclass
class RobotObservation:
    """One timestamped observation of the robot and its scene."""

    data: dict[str, np.ndarray]
    """LeRobot-named raw arrays of one frame: ``observation.state`` float, cameras uint8 HxWx3."""
    timestamp: float
    """Capture time in seconds on the loop's clock (``time.monotonic()`` on real hardware)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Optional flags: ``success`` (the task is solved), ``done`` (the episode cannot go on)."""


@runtime_checkable
class Robot(Protocol):
    """What the control loop needs from a robot (simulated or real)."""

    action_low: np.ndarray
    """(A,) lowest command the robot accepts (the safety layer clips to it)."""
    action_high: np.ndarray
    """(A,) highest command the robot accepts."""
    hold_keep_dims: tuple[int, ...]
    """Action dims a safety hold keeps at their last value (e.g. a gripper holding an object);
    all other dims are set to the hold action (zero: stand still, for velocity/delta control)."""
    instruction: str | None
    """The task instruction for language-conditioned policies (None: none)."""

    def reset(self, seed: int | None = None) -> RobotObservation:
        """Start an episode (a simulator draws the initial state from ``seed``; a real robot moves
        to its home pose and waits for the operator) and return the first observation."""
        ...

    def observe(self) -> RobotObservation:
        """The newest observation; may be the same one as last time if no new frame arrived."""
        ...

    def apply(self, action: np.ndarray) -> None:
        """Send one (A,) command; returns without waiting for the motion to finish."""
        ...

    def close(self) -> None:
        """Release hardware / simulator resources."""
        ...


# Suite family -> action dims that hold their value: Meta-World's 4th dim and robosuite's last dim
# are gripper efforts (letting go of an object is not "safe"); PushBlock is pure velocity control.
_HOLD_KEEP = {"metaworld": (3,), "robosuite": (-1,), "pushblock": ()}


class SimRobot:
    """A ``Robot`` over one task of a simulated suite (``envs.make_suite``).

    ``apply`` steps the env once (one control period of simulated physics) and the simulated world
    then stands still until the next ``apply``; so ``observe`` stamps the frame with the clock's time
    at the call (the state it shows is current then). ``info["success"]`` latches once the task has
    been solved in the episode; ``info["done"]`` follows the env's truncation.
    """

    def __init__(self, suite: Any, task: str | None = None, clock: Any = None):
        """``suite``: a suite object or a name for ``envs.make_suite`` (state observations);
        ``task`` None: the suite's first task; ``clock``: the loop's clock (default real time)."""
        if isinstance(suite, str):
            from envs import make_suite

            suite = make_suite(suite)
        self.suite = suite
        self.task = task if task is not None else suite.tasks[0]
        if self.task not in suite.tasks:
            raise ValueError(f"SimRobot: suite {suite.name!r} has no task {self.task!r}; tasks: {suite.tasks}")
        self.clock = clock if clock is not None else RealClock()
        self.env = suite.make_env(self.task)
        space = self.env.action_space
        self.action_low = np.asarray(space.low, dtype=np.float32).reshape(-1)
        self.action_high = np.asarray(space.high, dtype=np.float32).reshape(-1)
        a_dim = self.action_low.shape[0]
        family = str(getattr(suite, "name", "")).split("/")[0]
        self.hold_keep_dims = tuple(d % a_dim for d in _HOLD_KEEP.get(family, ()))
        self.instruction = suite.instruction(self.task)
        self.steps = 0
        self._data: dict[str, np.ndarray] | None = None
        self._success = False
        self._done = False

    def reset(self, seed: int | None = None) -> RobotObservation:
        self._data, _info = self.env.reset(seed=seed)
        self.steps = 0
        # Success already at reset is not counted (the evaluator flags it separately too).
        self._success = self._done = False
        return self.observe()

    def observe(self) -> RobotObservation:
        if self._data is None:
            raise RuntimeError("SimRobot.observe: call reset() first")
        return RobotObservation(self._data, self.clock.now(), {"success": self._success, "done": self._done})

    def apply(self, action: np.ndarray) -> None:
        if self._data is None:
            raise RuntimeError("SimRobot.apply: call reset() first")
        self._data, _reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float32))
        self.steps += 1
        self._success |= bool(info.get("success", info.get("is_success", False)))
        self._done = bool(terminated or truncated)

    def close(self) -> None:
        self.env.close()
