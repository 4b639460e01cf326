"""``ControlLoop``: a fixed-rate loop that reads timestamped observations, asks an ActionSource for
chunks through a ChunkScheduler (the evaluator's two objects) and sends one safe command per tick.

One tick, every ``1/hz`` seconds on the loop clock:

1. wake at the tick's due time (a loop that fell a whole period behind skips the missed ticks
   rather than running them late: each counts as a deadline miss);
2. check the emergency stop, read the robot's newest observation, collect a chunk that finished;
3. watchdog: an observation older than ``stale_obs_s`` holds the robot (and ends the run after
   ``stale_stop_s``); otherwise the frame goes to the source, as an inference request if the
   scheduler wants a chunk and none is in flight, else as a plain observation;
4. blocking schedulers (sync, ensemble) wait for the requested chunk until the tick's deadline;
   the async scheduler never waits: the chunk arrives in a later tick and is aligned by its
   observation timestamp, actions whose time passed during inference being skipped;
5. the scheduler's action for now goes through the safety layer; with no action (inference late,
   server down) the robot is held;
6. log the tick (``TimingLog``).

Inference always runs on a background thread (``InferenceWorker``), so a slow or dead policy
server costs the loop at most the tick's deadline. With a ``SimClock`` the loop waits for every
chunk and time advances only between ticks: exactly the evaluator's ``step * dt`` semantics.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from robopolicy.deploy.clock import RealClock
from robopolicy.deploy.chunk import Chunk
from robopolicy.deploy.safety import EmergencyStop, SafetyConfig, SafetyLayer
from robopolicy.deploy.scheduler import AsyncScheduler
from robopolicy.deploy.timing import Tick, TimingLog
from robopolicy.deploy.worker import InferenceWorker

STOP_REASONS = ("success", "done", "max_steps", "duration", "estop", "stale_obs", "error")


@dataclass
class LoopConfig:
    """Rate and episode limits of the control loop."""

    hz: float = 20.0
    """Control rate: commands per second (the chunks' action spacing is 1/hz)."""
    max_steps: Optional[int] = None
    """Commands sent before the episode ends; None: until the robot reports done."""
    duration_s: Optional[float] = None
    """Seconds (loop clock) before the episode ends; None: no limit."""
    block_on_inference: Optional[bool] = None
    """Wait in a tick for the chunk it requested (up to its deadline); None: unless async (always with a SimClock)."""
    stop_on_success: bool = True
    """End the episode at the first observation reporting success (the evaluator's rule)."""
    stop_on_done: bool = True
    """End the episode when the robot reports done (a simulator's step limit)."""
    apply_margin: float = 0.1
    """Fraction of the period kept for sending the command after waiting for a chunk."""
    gil_switch_interval_s: Optional[float] = 0.001
    """Python's thread switch interval in real time: how long a waking loop may wait for the GIL; None: 5 ms."""

    def __post_init__(self) -> None:
        if not self.hz > 0:
            raise ValueError(f"loop: hz must be > 0, got {self.hz}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"loop: max_steps must be >= 1 or None, got {self.max_steps}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"loop: duration_s must be > 0 or None, got {self.duration_s}")
        if not 0 <= self.apply_margin < 1:
            raise ValueError(f"loop: apply_margin must be in [0, 1), got {self.apply_margin}")
        if self.gil_switch_interval_s is not None and not self.gil_switch_interval_s > 0:
            raise ValueError(f"loop: gil_switch_interval_s must be > 0 or None, got {self.gil_switch_interval_s}")


@dataclass
class EpisodeResult:
    """What one episode of the control loop did."""

    success: bool
    """The robot reported success at some tick."""
    steps: int
    """Commands sent (policy actions and holds)."""
    stop_reason: str
    """One of ``STOP_REASONS``."""
    timing: dict[str, Any]
    """``TimingLog.summary()``."""
    scheduler_stats: dict[str, int] = field(default_factory=dict)
    """The scheduler's counters (chunks, skipped stale actions, ...)."""
    safety_stats: dict[str, int] = field(default_factory=dict)
    """Clipped / rate-limited commands and holds by reason."""
    inference_errors: int = 0
    """Requests that failed with a connection error (the robot was held, the client reconnected)."""
    log: TimingLog | None = None
    """The per-tick log (for ``save``/``plot``)."""

    def to_dict(self) -> dict[str, Any]:
        return {"success": self.success, "steps": self.steps, "stop_reason": self.stop_reason,
                "timing": self.timing, "scheduler_stats": self.scheduler_stats,
                "safety_stats": self.safety_stats, "inference_errors": self.inference_errors}


class ControlLoop:
    """Drive ``robot`` with chunks from ``source`` (an ActionSource) scheduled by ``scheduler``."""

    def __init__(self, robot: Any, source: Any, scheduler: Any, config: LoopConfig | None = None,
                 safety: SafetyConfig | None = None, clock: Any = None, estop: EmergencyStop | None = None,
                 task: str | None = None):
        """``clock`` None: real time (a ``SimRobot`` must share the loop's clock); ``task`` None:
        the robot's instruction; ``estop`` None: one watching ``safety.estop_file``."""
        self.robot, self.source, self.scheduler = robot, source, scheduler
        self.config = config or LoopConfig()
        self.safety_config = safety or SafetyConfig()
        self.clock = clock if clock is not None else RealClock()
        self.period = 1.0 / float(self.config.hz)
        self.safety = SafetyLayer(self.safety_config, robot.action_low, robot.action_high,
                                  tuple(getattr(robot, "hold_keep_dims", ())))
        self.estop = estop if estop is not None else EmergencyStop(self.safety_config.estop_file)
        self.stale_obs_s = (self.safety_config.stale_obs_s if self.safety_config.stale_obs_s is not None
                            else 3.0 * self.period)
        self.block = (self.config.block_on_inference if self.config.block_on_inference is not None
                      else not isinstance(scheduler, AsyncScheduler))
        if not getattr(self.clock, "realtime", True):
            self.block = True  # simulated time stands still while a chunk is computed
        self.task = task if task is not None else getattr(robot, "instruction", None)
        self.worker = InferenceWorker(source)

    def close(self) -> None:
        """Stop the inference thread (the robot is the caller's to close)."""
        self.worker.close()

    def __enter__(self) -> "ControlLoop":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------
    def run_episode(self, seed: int | None = None, log: TimingLog | None = None,
                    noise_seed: int | None = None) -> EpisodeResult:
        """Reset the robot (``seed`` for a simulator) and run until a stop condition; the ticks
        are appended to ``log`` (one log for a whole run of episodes) or to a new one.
        ``noise_seed``: the episode's own noise stream (``PolicySource.reset``; with
        ``episode_noise_seed`` the evaluator's, so a SimClock episode repeats its evaluator twin)."""
        cfg, clock, period = self.config, self.clock, self.period
        realtime = bool(getattr(clock, "realtime", True))
        self.robot.reset(seed)
        self.worker.reset(noise_seeds=None if noise_seed is None else [int(noise_seed)])
        self.scheduler.reset()
        self.safety.reset()
        log = log if log is not None else TimingLog(cfg.hz)
        episode = 1 + max((t.episode for t in log.ticks), default=-1)
        self._errors, self._server_down, self._fatal = 0, False, None
        steps, k, success, reason = 0, 0, False, None
        last_ts: float | None = None
        stale_since: float | None = None
        last_was_hold, done = False, False
        switch_interval = sys.getswitchinterval()
        if realtime and cfg.gil_switch_interval_s is not None:
            sys.setswitchinterval(cfg.gil_switch_interval_s)
        t0 = clock.now()
        try:
            while reason is None:
                t_sched = t0 + k * period
                clock.sleep_until(t_sched)
                t_start = clock.now()
                skipped = 0
                if realtime and t_start - t_sched >= period:  # fell behind: skip, don't run late
                    skipped = int((t_start - t_sched) // period)
                    k, t_sched = k + skipped, t_sched + skipped * period
                if cfg.max_steps is not None and steps >= cfg.max_steps:
                    reason = "max_steps"
                    break
                if cfg.duration_s is not None and t_start - t0 >= cfg.duration_s - 1e-9:
                    reason = "duration"
                    break
                obs = self.robot.observe()
                success |= bool(obs.info.get("success", False))
                done = bool(obs.info.get("done", False))
                if success and cfg.stop_on_success:
                    reason = "success"
                    break
                if done and cfg.stop_on_done:
                    reason = "done"
                    break

                hold: str | None = None
                latency = self._collect(self.worker.poll(), t_start)
                age = clock.now() - obs.timestamp
                if self.estop.check() is not None:
                    hold, reason = "estop", "estop"
                elif age > self.stale_obs_s:
                    hold = "stale_obs"
                    stale_since = t_start if stale_since is None else stale_since
                    limit = self.safety_config.stale_stop_s
                    if limit is not None and t_start - stale_since >= limit:
                        self.estop.trigger(f"observations stale for {t_start - stale_since:.2f} s")
                        reason = "stale_obs"
                else:
                    stale_since = None
                    if obs.timestamp != last_ts:  # a new frame (a robot camera may lag the loop)
                        last_ts = obs.timestamp
                        if not self.worker.busy and self.scheduler.needs_inference(t_start):
                            self.worker.submit(obs.data, self.task, obs.timestamp, t_start)
                            if self.block:
                                timeout = (max(0.0, t_sched + period * (1 - cfg.apply_margin) - clock.now())
                                           if realtime else None)
                                lat = self._collect(self.worker.poll(timeout), clock.now())
                                latency = lat if math.isfinite(lat) else latency
                        else:
                            self.worker.observe(obs.data)
                    action = self.scheduler.next_action(clock.now())
                    if action is None:
                        hold = ("server_down" if self._server_down
                                else "inference_late" if self.worker.busy else "no_chunk")
                if self._fatal is not None:
                    hold = "error"
                if hold is None:
                    command, hold = self.safety.filter(np.asarray(action)[0])
                else:
                    command = self.safety.hold(hold)
                self.robot.apply(command)
                steps += 1
                last_was_hold = hold is not None
                t_applied = clock.now()
                log.record(Tick(episode=episode, tick=k, t_sched=t_sched, t_start=t_start, t_applied=t_applied,
                                obs_age=age, latency=latency, hold=hold or "",
                                deadline_miss=t_applied > t_sched + period, skipped=skipped))
                if self._fatal is not None:
                    reason = "error"
                    raise self._fatal
                k += 1
        finally:
            sys.setswitchinterval(switch_interval)
            # Leave the robot holding, not executing its last command (unless the episode is over
            # for the robot itself, e.g. a simulator past its step limit).
            if not last_was_hold and not done and steps > 0:
                self.robot.apply(self.safety.hold("end"))
        return EpisodeResult(success=success, steps=steps, stop_reason=reason or "error",
                             timing=log.episode(episode).summary(),
                             scheduler_stats=dict(getattr(self.scheduler, "stats", {}) or {}),
                             safety_stats=dict(self.safety.stats), inference_errors=self._errors, log=log)

    def _collect(self, result: Chunk | BaseException | None, now: float) -> float:
        """Hand a finished request to the scheduler; its latency (NaN if none or failed)."""
        if result is None:
            return math.nan
        if isinstance(result, BaseException):
            if isinstance(result, (ConnectionError, TimeoutError)):
                # A dead or hung server: hold while the scheduler is dry; the client reconnects.
                self._errors += 1
                self._server_down = True
            else:
                self._fatal = result  # a bug or a misconfiguration: hold this tick, then stop
            return math.nan
        self._server_down = False
        self.scheduler.push(result, now)
        return float(result.latency_s)
