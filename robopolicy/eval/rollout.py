"""One lockstep batch of episodes in a gymnasium vector env, driven by an ActionSource and a
ChunkScheduler (the same two objects the robot control loop uses).

All envs of the batch are reset together with their own fixed seeds and run until every episode
is decided (succeeded, ended, or hit the step limit). Gymnasium 1.x autoresets an env on the step
*after* it ended (``NEXT_STEP`` mode); a finished env's later observations, rewards and infos are
ignored here, so that autoreset can never leak into the results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from gymnasium.vector import VectorEnv

from robopolicy.deploy.action_source import ActionSource, Chunk
from robopolicy.deploy.scheduler import ChunkScheduler

FrameFn = Callable[[dict[str, np.ndarray]], Sequence[np.ndarray | None] | None]
"""Batch observation -> one RGB frame per env (or None when frames are unavailable)."""


@dataclass
class BatchResult:
    """What one lockstep batch produced."""

    success: np.ndarray
    """(B,) bool: the env reported ``info["success"]`` at some step."""
    length: np.ndarray
    """(B,) int: steps to the first success, else the steps the episode ran."""
    frames: dict[int, list[np.ndarray]] = field(default_factory=dict)
    """Env slot -> recorded frames (reset frame first) for the slots asked to record."""
    latencies: list[float] = field(default_factory=list)
    """Seconds of each inference call of the batch."""
    steps: int = 0
    """Vector steps taken (each steps every env)."""
    solved_at_reset: np.ndarray | None = None
    """(B,) bool: the env reported success already in its reset info."""


def _info_flag(infos: dict, n: int) -> np.ndarray:
    """Per-env success flags from a vector env's info dict (``success``, else ``is_success``)."""
    for key in ("success", "is_success"):
        if key in infos:
            vals = np.asarray(infos[key])
            mask = np.asarray(infos.get("_" + key, np.ones(n, dtype=bool)), dtype=bool)
            return np.asarray(vals, dtype=bool).reshape(n) & mask
    return np.zeros(n, dtype=bool)


def run_batch(
    vec: VectorEnv,
    source: ActionSource,
    scheduler: ChunkScheduler,
    seeds: Sequence[int],
    task: str | list[str] | None,
    max_steps: int,
    dt: float,
    record: Sequence[int] = (),
    frame_fn: FrameFn | None = None,
    latency_steps: int = 0,
) -> BatchResult:
    """Run one episode in each env of ``vec`` (reset with ``seeds``) until all are decided.

    Simulated time is ``now = step * dt``. With ``latency_steps > 0`` a chunk inferred from the
    observation at step ``t`` reaches the scheduler at step ``t + latency_steps`` while the envs
    keep executing the previous chunk, as on a robot with asynchronous inference; the episode's
    first chunk is waited for (a robot stays still until it has one).
    """
    n = vec.num_envs
    if len(seeds) != n:
        raise ValueError(f"run_batch: {len(seeds)} seeds for {n} envs")
    obs, infos = vec.reset(seed=[int(s) for s in seeds])
    source.reset()
    scheduler.reset()
    success = np.zeros(n, dtype=bool)
    ended = np.zeros(n, dtype=bool)
    length = np.full(n, max_steps, dtype=np.int64)
    # Reset infos are not steps: an initial state that already reads as solved is only flagged
    # (the evaluator reports it) so it cannot inflate the success rate unnoticed.
    solved_at_reset = _info_flag(infos, n)
    frames: dict[int, list[np.ndarray]] = {i: [] for i in record}
    latencies: list[float] = []

    def grab(live: np.ndarray) -> None:
        if not frames or frame_fn is None:
            return
        batch = frame_fn(obs)
        if batch is None:
            frames.clear()  # no frames from this env: record nothing rather than a partial video
            return
        for i in frames:
            if live[i] and batch[i] is not None:
                frames[i].append(np.asarray(batch[i]).copy())

    grab(np.ones(n, dtype=bool))
    pending: tuple[Chunk, int] | None = None  # (chunk in flight, step it arrives)
    step = 0
    for step in range(max_steps):
        now = step * dt
        if pending is not None and pending[1] <= step:
            scheduler.push(pending[0], now)
            pending = None
        if pending is None and scheduler.needs_inference(now):
            chunk = source.infer(obs, task=task, t_obs=now)
            latencies.append(chunk.latency_s)
            if latency_steps == 0 or step == 0:
                scheduler.push(chunk, now)
            else:
                pending = (chunk, step + latency_steps)
        else:
            source.observe(obs)
        action = scheduler.next_action(now)
        if action is None:
            raise RuntimeError(
                f"{type(scheduler).__name__} ran out of actions at step {step}"
                + (f" with a chunk in flight (latency_steps={latency_steps}): use the async scheduler "
                   f"with threshold >= latency_steps + 1" if pending is not None else "")
            )
        obs, _reward, terminated, truncated, infos = vec.step(np.asarray(action, dtype=np.float32))
        undecided = ~(success | ended)
        new_success = _info_flag(infos, n) & undecided
        length[new_success] = step + 1
        success |= new_success
        just_ended = (np.asarray(terminated) | np.asarray(truncated)) & undecided & ~new_success
        length[just_ended] = step + 1
        ended |= just_ended
        grab(undecided)
        if (success | ended).all():
            break
    return BatchResult(success=success, length=length, frames=frames, latencies=latencies, steps=step + 1,
                       solved_at_reset=solved_at_reset)
