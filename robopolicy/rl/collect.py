"""Imagined rollouts: a policy run batched inside a world model's vector env, step by step recorded.

The episodes are driven by the evaluator's own loop (``robopolicy.eval.rollout.run_batch``, with
the same ``ActionSource`` / ``ChunkScheduler`` the robot uses); the only thing added here is a thin
``RecordingVectorEnv`` around the world model's vector env that keeps every observation, action,
reward and success flag the loop passes through it. There is no second copy of the env loop.

``Rollouts`` holds E episodes padded to a common length T: ``obs[key]`` (E, T+1, ...) raw units
(``obs[:, t]`` is the observation the action ``actions[:, t]`` was chosen from), ``rewards`` /
``success_prob`` / ``step_success`` (E, T) from the world model's heads, ``length`` (E,) the steps
to the first imagined success (else the steps run), ``success`` (E,) the episode's imagined success,
``valid`` (E, T) ``t < length`` (the steps the evaluator counts) and ``end`` (E,) the rows that
belong to the episode (``length`` plus up to ``post_success_steps`` settled frames after a success,
as the demonstration recorder keeps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from robopolicy.deploy.action_source import PolicySource
from robopolicy.deploy.scheduler import make_scheduler
from robopolicy.eval.rollout import run_batch


class CappedSuite:
    """A world-model suite whose imagined episodes stop after at most ``max_steps`` steps
    (imagination drifts over long horizons); everything else is the wrapped suite's."""

    def __init__(self, suite: Any, max_steps: int | None):
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or null, got {max_steps}")
        self._suite, self._max = suite, max_steps

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_suite"], name)

    def max_episode_steps(self, task: str) -> int:
        n = int(self._suite.max_episode_steps(task))
        return n if self._max is None else min(n, int(self._max))

    def make_vector(self, task: str, n_envs: int):
        from robopolicy.world_model.env import WorldModelVectorEnv

        self._suite.check_task(task)
        return WorldModelVectorEnv(self, task, n_envs)  # reads max_episode_steps from this wrapper


class RecordingVectorEnv(VectorEnv):
    """Passes every call to ``vec`` and keeps what went through: the reset observation, then per
    step the actions, rewards, success flags / probabilities and next observations."""

    def __init__(self, vec: VectorEnv):
        self.vec = vec
        self.num_envs = vec.num_envs
        self.single_observation_space, self.observation_space = vec.single_observation_space, vec.observation_space
        self.single_action_space, self.action_space = vec.single_action_space, vec.action_space
        self.metadata, self.render_mode = vec.metadata, getattr(vec, "render_mode", None)
        self.clear()

    def clear(self) -> None:
        self.obs: list[dict[str, np.ndarray]] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[np.ndarray] = []
        self.success: list[np.ndarray] = []
        self.success_prob: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        self.clear()
        obs, info = self.vec.reset(seed=seed, options=options)
        self.obs.append({k: np.array(v) for k, v in obs.items()})
        return obs, info

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.vec.step(actions)
        n = self.num_envs
        self.actions.append(np.array(actions, dtype=np.float32).reshape(n, -1))
        self.rewards.append(np.asarray(reward, dtype=np.float32).reshape(n))
        flag = np.asarray(info.get("success", np.zeros(n, bool)), dtype=bool).reshape(n)
        self.success.append(flag)
        self.success_prob.append(np.asarray(info.get("success_prob", flag), dtype=np.float32).reshape(n))
        self.obs.append({k: np.array(v) for k, v in obs.items()})
        return obs, reward, terminated, truncated, info

    def call(self, name: str, *args, **kwargs):
        return self.vec.call(name, *args, **kwargs)

    def close_extras(self, **kwargs) -> None:
        self.vec.close()


@dataclass
class Rollouts:
    """E imagined episodes padded to T steps (see the module docstring)."""

    obs: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    success_prob: np.ndarray
    step_success: np.ndarray
    length: np.ndarray
    success: np.ndarray
    end: np.ndarray
    tasks: list[str]
    """(E,) suite task names."""
    instructions: list[str]
    """(E,) the tasks' instructions (what a language-conditioned policy reads)."""
    seeds: np.ndarray
    """(E,) the real initial state's reset seed."""
    groups: np.ndarray
    """(E,) id of the initial state: episodes with the same id started from the same state."""
    records: list[dict[str, Any]] = field(default_factory=list)
    """Per inference call, what a recording ``ActionSource`` kept (DPPO: the denoising chain),
    with ``episode`` (its row) and ``step`` (the env step it was inferred at)."""

    @property
    def num_episodes(self) -> int:
        return int(len(self.length))

    @property
    def horizon(self) -> int:
        return int(self.actions.shape[1])

    @property
    def valid(self) -> np.ndarray:
        return np.arange(self.horizon)[None, :] < self.length[:, None]

    @property
    def success_rate(self) -> float:
        return float(self.success.mean()) if self.num_episodes else 0.0


def collect_imagined(
    policy: torch.nn.Module,
    suite: Any,
    starts: Sequence[tuple[str, int]],
    n_envs: int = 16,
    *,
    seed: int = 0,
    post_success_steps: int = 4,
    make_source: Callable[[int], Any] | None = None,
) -> Rollouts:
    """Run ``policy`` from each ``(task, reset seed)`` of ``starts`` (repeat a start to get several
    imagined episodes from the same real initial state) in ``suite``'s vector envs (a
    ``WorldModelSuite`` or ``CappedSuite``), ``n_envs`` at a time, through the evaluator's loop.

    ``make_source(n_envs)`` builds the ``ActionSource`` (default: a ``PolicySource`` with one batched
    call per chunk on torch's global RNG, reseeded per batch from ``seed``); a source with
    ``pop_records()`` (a list of dicts with an ``env`` slot and a ``step``) has those collected into
    ``Rollouts.records``."""
    if n_envs < 1:
        raise ValueError(f"collect_imagined: n_envs must be >= 1, got {n_envs}")
    if not starts:
        raise ValueError("collect_imagined: no initial states given")
    dt = 1.0 / float(suite.fps)
    group_of: dict[tuple[str, int], int] = {}
    for s in starts:
        group_of.setdefault((s[0], int(s[1])), len(group_of))
    eps: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    by_task: dict[str, list[int]] = {}
    for task, s in starts:
        by_task.setdefault(task, []).append(int(s))
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        for task_idx, (task, seeds) in enumerate(by_task.items()):
            width = min(n_envs, len(seeds))
            vec = RecordingVectorEnv(suite.make_vector(task, width))
            source = make_source(width) if make_source is not None else PolicySource(policy, n_envs=width, dt=dt)
            scheduler = make_scheduler("sync")
            max_steps = int(suite.max_episode_steps(task))
            instruction = suite.instruction(task)
            try:
                for b, first in enumerate(range(0, len(seeds), width)):
                    real = seeds[first:first + width]
                    slots = real + [real[-1]] * (width - len(real))  # padding slots are discarded
                    torch.manual_seed(int(np.random.SeedSequence([seed, task_idx, b]).generate_state(1)[0]))
                    res = run_batch(vec, source, scheduler, slots, [instruction] * width, max_steps, dt)
                    steps = len(vec.actions)
                    acts, rew = np.stack(vec.actions, 1), np.stack(vec.rewards, 1)
                    succ, prob = np.stack(vec.success, 1), np.stack(vec.success_prob, 1)
                    obs = {k: np.stack([o[k] for o in vec.obs], 1) for k in vec.obs[0]}
                    row0 = len(eps)
                    for i, s in enumerate(real):
                        length = int(res.length[i])
                        eps.append({
                            "obs": {k: v[i] for k, v in obs.items()}, "actions": acts[i], "rewards": rew[i],
                            "success_prob": prob[i], "step_success": succ[i], "length": length,
                            "success": bool(res.success[i]),
                            "end": min(length + (post_success_steps if res.success[i] else 0), steps),
                            "task": task, "instruction": instruction, "seed": s, "group": group_of[(task, s)]})
                    if hasattr(source, "pop_records"):
                        for r in source.pop_records():
                            if r["env"] < len(real):
                                records.append({**r, "episode": row0 + int(r["env"])})
            finally:
                vec.close()
    return _pad(eps, records)


def _pad(eps: list[dict[str, Any]], records: list[dict[str, Any]]) -> Rollouts:
    """Episodes of different batches (different step counts) padded to the longest: arrays repeat
    their last row, flags are False there."""
    T = max(len(e["actions"]) for e in eps)

    def pad(x: np.ndarray, n: int, fill=None) -> np.ndarray:
        if len(x) >= n:
            return x[:n]
        tail = np.repeat(x[-1:], n - len(x), axis=0) if fill is None else np.full((n - len(x), *x.shape[1:]), fill, x.dtype)
        return np.concatenate([x, tail], axis=0)

    keys = list(eps[0]["obs"])
    return Rollouts(
        obs={k: np.stack([pad(e["obs"][k], T + 1) for e in eps]) for k in keys},
        actions=np.stack([pad(e["actions"], T) for e in eps]),
        rewards=np.stack([pad(e["rewards"], T, 0.0) for e in eps]),
        success_prob=np.stack([pad(e["success_prob"], T, 0.0) for e in eps]),
        step_success=np.stack([pad(e["step_success"], T, False) for e in eps]),
        length=np.array([e["length"] for e in eps], dtype=np.int64),
        success=np.array([e["success"] for e in eps], dtype=bool),
        end=np.array([e["end"] for e in eps], dtype=np.int64),
        tasks=[e["task"] for e in eps],
        instructions=[e["instruction"] for e in eps],
        seeds=np.array([e["seed"] for e in eps], dtype=np.int64),
        groups=np.array([e["group"] for e in eps], dtype=np.int64),
        records=records,
    )
