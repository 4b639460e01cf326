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
    perturbed: np.ndarray | None = None
    """(B,) bool: the object was displaced while the episode was still undecided (None: no
    perturbation asked for)."""
    uncertainty_mean: np.ndarray | None = None
    """(B,) float: mean of the policy's ``info["uncertainty"]`` over the episode's inference calls
    (NaN for an env that got none); None when the policy never reported uncertainty."""
    uncertainty_max: np.ndarray | None = None
    """(B,) float: the maximum of the same values."""
    compute_steps: tuple[float, int] = (0.0, 0)
    """(sum, count) of the policy's ``info["compute_steps"]`` (steps an adaptive sampler spent per
    env and call) over the live envs' inference calls; (0, 0) when it reports none."""


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
    perturb_step: int = 0,
    noise_seeds: Sequence[int] | None = None,
) -> BatchResult:
    """Run one episode in each env of ``vec`` (reset with ``seeds``) until all are decided.

    Simulated time is ``now = step * dt``. With ``latency_steps > 0`` a chunk inferred from the
    observation at step ``t`` reaches the scheduler at step ``t + latency_steps`` while the envs
    keep executing the previous chunk, as on a robot with asynchronous inference; the episode's
    first chunk is waited for (a robot stays still until it has one).

    With ``perturb_step > 0`` every env's object is displaced once, after ``perturb_step`` steps
    (``env.perturb()``, seeded by the env's reset seed), before the policy sees the observation.
    A policy that reports ``info["uncertainty"]`` (a float or one value per env) has its mean and
    max over each episode's undecided calls recorded. ``noise_seeds`` (one per env) give each
    env its own noise stream (``PolicySource.reset``).
    """
    n = vec.num_envs
    if len(seeds) != n:
        raise ValueError(f"run_batch: {len(seeds)} seeds for {n} envs")
    obs, infos = vec.reset(seed=[int(s) for s in seeds])
    if noise_seeds is None:
        source.reset()
    else:
        source.reset(noise_seeds=list(noise_seeds))
    scheduler.reset()
    success = np.zeros(n, dtype=bool)
    ended = np.zeros(n, dtype=bool)
    length = np.full(n, max_steps, dtype=np.int64)
    # Reset infos are not steps: an initial state that already reads as solved is only flagged
    # (the evaluator reports it) so it cannot inflate the success rate unnoticed.
    solved_at_reset = _info_flag(infos, n)
    frames: dict[int, list[np.ndarray]] = {i: [] for i in record}
    latencies: list[float] = []
    perturbed = np.zeros(n, dtype=bool) if perturb_step > 0 else None
    u_sum, u_count, u_max = np.zeros(n), np.zeros(n, dtype=np.int64), np.full(n, -np.inf)
    c_sum, c_count = 0.0, 0

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
        if perturbed is not None and step == perturb_step:
            # The object jumps; a chunk already planned still plays out, as it would on a robot.
            outs = vec.call("perturb")
            obs = {k: np.stack([o[k] for o in outs]) for k in outs[0]}
            perturbed = ~(success | ended)
        if pending is not None and pending[1] <= step:
            scheduler.push(pending[0], now)
            pending = None
        if pending is None and scheduler.needs_inference(now):
            chunk = source.infer(obs, task=task, t_obs=now)
            latencies.append(chunk.latency_s)
            if "uncertainty" in chunk.info:
                u = _per_env(chunk.info["uncertainty"], n)
                live = ~(success | ended)
                u_sum[live] += u[live]
                u_count[live] += 1
                u_max[live] = np.maximum(u_max[live], u[live])
            if "compute_steps" in chunk.info:
                live = ~(success | ended)
                c_sum += float(_per_env(chunk.info["compute_steps"], n)[live].sum())
                c_count += int(live.sum())
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
    reported = u_count > 0
    return BatchResult(success=success, length=length, frames=frames, latencies=latencies, steps=step + 1,
                       solved_at_reset=solved_at_reset, perturbed=perturbed,
                       uncertainty_mean=np.where(reported, u_sum / np.maximum(u_count, 1), np.nan)
                       if reported.any() else None,
                       uncertainty_max=np.where(reported, u_max, np.nan) if reported.any() else None,
                       compute_steps=(c_sum, c_count))


def _per_env(value, n: int) -> np.ndarray:
    """A policy's ``info["uncertainty"]`` (float, or (B,) tensor/array) as (n,) float64."""
    if hasattr(value, "detach"):
        value = value.detach().to("cpu").double().numpy()
    u = np.asarray(value, dtype=np.float64)
    if u.ndim == 0:
        u = np.full(n, float(u))
    if u.shape != (n,):
        raise ValueError(f"policy info['uncertainty'] must be a float or one value per env, shape ({n},); "
                         f"got shape {u.shape}")
    if not np.all(np.isfinite(u)):
        raise ValueError(f"policy info['uncertainty'] has non-finite values: {u}")
    return u
