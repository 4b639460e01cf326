"""One scripted-expert episode, run in a recorder worker process.

Kept free of torch/pyarrow imports so worker processes start fast. Each worker keeps one suite,
env and expert per task and reuses them across trials.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."
ACTION_KEY = "action"


@dataclass(frozen=True)
class RolloutSpec:
    """What every worker needs to rebuild the suite (picklable)."""

    suite_name: str
    """Suite name for ``make_suite`` (e.g. 'metaworld/mt1/push-v3')."""
    obs: str = "state"
    """'state' or 'image'."""
    image_size: int = 84
    """Camera image height and width."""
    seed_split: str = "train"
    """Which trial seeds to use ('train' or 'eval')."""
    stop_on_success: bool = True
    """End the episode once the task reports success (plus ``post_success_steps``)."""
    post_success_steps: int = 4
    """Frames kept after the first success, so the policy also sees the settled end state."""
    suite_factory: str = "envs:make_suite"
    """'module:function' building a suite from (name, obs=, image_size=); tests use a fake."""


@dataclass
class EpisodeResult:
    """A finished rollout: per-frame arrays keyed by dataset feature name."""

    task: str
    trial: int
    seed: int
    success: bool
    instruction: str
    fps: float
    frames: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.frames[ACTION_KEY])


_CACHE: dict[tuple, Any] = {}


def _factory(path: str) -> Callable[..., Any]:
    module, _, fn = path.partition(":")
    return getattr(importlib.import_module(module), fn)


def _suite(spec: RolloutSpec):
    key = ("suite", spec.suite_factory, spec.suite_name, spec.obs, spec.image_size)
    if key not in _CACHE:
        _CACHE[key] = _factory(spec.suite_factory)(spec.suite_name, obs=spec.obs, image_size=spec.image_size)
    return _CACHE[key]


def suite_tasks(spec: RolloutSpec) -> list[str]:
    return list(_suite(spec).tasks)


REWARD_KEY = "next.reward"
SUCCESS_KEY = "next.success"
DONE_KEY = "next.done"

ActionHook = Callable[[np.ndarray, Any, int], np.ndarray]
"""(expert action, env, seed) -> executed action: e.g. the play recorder's action noise."""


def run_episode(spec: RolloutSpec, task: str, trial: int, *, perturb: Callable[[Any, int], ActionHook] | None = None,
                rewards: bool = False, actor: Callable[[Any, str], Any] | None = None) -> EpisodeResult:
    """Roll out the suite's expert on ``task`` from trial ``trial``'s initial state.

    Frame t pairs the observation before step t with the action executed at it (lerobot's
    convention). ``perturb(env, seed)``, when given, returns a per-episode function mapping the
    expert's action to the executed one (the expert is still queried at every step). ``rewards``
    also stores lerobot's ``next.reward`` / ``next.success`` / ``next.done`` per frame.
    ``actor(suite, task)``, when given, builds what acts instead of the suite's expert (once per
    process; e.g. a ``PolicyExpert``); its ``reset(seed)`` gets the episode's seed (its noise stream).
    """
    suite = _suite(spec)
    key = ("env", spec, task)
    if key not in _CACHE:
        _CACHE[key] = (suite.make_env(task), actor(suite, task) if actor is not None else suite.make_expert(task))
    env, expert = _CACHE[key]
    seed = int(suite.trial_seed(task, trial, spec.seed_split))
    act = perturb(env, seed) if perturb is not None else None
    obs, info = env.reset(seed=seed)
    if actor is not None:
        expert.reset(seed)
    else:
        expert.reset()
    rec: dict[str, list] = {}
    success = bool(info.get("success", False))
    left = None  # frames still to record after the first success
    for _ in range(int(suite.max_episode_steps(task))):
        action = np.asarray(expert.act(obs), dtype=np.float32)
        if act is not None:
            action = act(action)
        for k, v in obs.items():
            if k == STATE_KEY or k.startswith(IMAGE_PREFIX):
                rec.setdefault(k, []).append(np.asarray(v))
        rec.setdefault(ACTION_KEY, []).append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        step_success = bool(info.get("success", False))
        if rewards:
            rec.setdefault(REWARD_KEY, []).append(np.float32(reward))
            rec.setdefault(SUCCESS_KEY, []).append(step_success)
        if step_success and not success:
            success = True
            left = spec.post_success_steps
        if terminated or truncated:
            break
        if spec.stop_on_success and left is not None:
            if left == 0:
                break
            left -= 1
    frames = {k: np.stack(v) for k, v in rec.items()}
    if rewards:
        frames[REWARD_KEY] = frames[REWARD_KEY].astype(np.float32)
        frames[SUCCESS_KEY] = frames[SUCCESS_KEY].astype(bool)
        done = np.zeros(len(frames[ACTION_KEY]), dtype=bool)
        done[-1] = True  # lerobot marks the episode's last frame
        frames[DONE_KEY] = done
    return EpisodeResult(
        task=task,
        trial=int(trial),
        seed=seed,
        success=success,
        instruction=suite.instruction(task),
        fps=float(suite.fps),
        frames=frames,
    )


def close_all() -> None:
    """Close cached envs (renderers hold GL contexts)."""
    for key, val in list(_CACHE.items()):
        if key[0] == "env":
            val[0].close()
    _CACHE.clear()
