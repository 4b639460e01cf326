"""Imagined episodes behind the suite / vector-env API the evaluator uses for real simulators.

``WorldModelSuite`` looks like a task suite (tasks, instructions, fps, step limits, the real
suite's trial seeds) and builds ``WorldModelVectorEnv``s: gymnasium vector envs whose B envs are
stepped by one batched world-model call. ``reset(seed=[...])`` resets the *real* simulator at each
seed (a held-out trial's initial state) to get the true first observation, then imagines from
there; ``reset(options={"initial_obs": {...}})`` starts from given observations instead.

Per step: the next observation is the model's, ``reward`` the reward head's, ``info["success"]``
the success head's probability above ``success_threshold``; ``truncated`` at the task's step
limit; ``terminated`` stays False (the real suites never terminate either) unless
``terminate_on_done`` uses the termination head. Ends are sticky: a finished env keeps stepping
and reporting its end until the next ``reset`` (no autoreset; the evaluator ignores later steps).
Sampling noise comes from one generator seeded by the reset seeds, so a batch of trials is
reproducible; it depends on which trials share the batch.

An image world model's observations include its camera (``observation.images.<camera>``,
(H, W, C) uint8 like the real env's); ``render`` then returns the latest imagined frame of that
camera, so the evaluator can write videos of imagined episodes for state policies too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from robopolicy.types import IMAGE_PREFIX, STATE_KEY
from robopolicy.world_model.base import WorldModel


def _obs_array(key: str, value) -> np.ndarray:
    """Raw observation dtype: uint8 pixels for cameras, float32 otherwise."""
    return np.asarray(value, dtype=np.uint8 if key.startswith(IMAGE_PREFIX) else np.float32)


class WorldModelSuite:
    """A world model posing as the task suite it was trained on (see the module docstring)."""

    def __init__(self, model: WorldModel, real_suite: Any, device: str | torch.device = "cpu",
                 success_threshold: float = 0.5, terminate_on_done: bool = False):
        if abs(float(model.features.fps) - float(real_suite.fps)) > 1e-6 * float(real_suite.fps):
            raise ValueError(f"WorldModelSuite: the world model was trained at {model.features.fps} fps, suite "
                             f"{real_suite.name!r} runs at {real_suite.fps} fps")
        if not 0 < success_threshold < 1:
            raise ValueError(f"WorldModelSuite: success_threshold must lie in (0, 1), got {success_threshold}")
        self.model = model.to(device).eval()
        self.real = real_suite
        self.device = torch.device(device)
        self.success_threshold = float(success_threshold)
        self.terminate_on_done = bool(terminate_on_done)
        self.name = f"world_model:{real_suite.name}"
        self.tasks = list(real_suite.tasks)
        self.fps = float(real_suite.fps)
        self.obs = "state" if not any(k.startswith(IMAGE_PREFIX) for k in model.observation_keys) else "image"
        self.cameras = [k[len(IMAGE_PREFIX):] for k in model.observation_keys if k.startswith(IMAGE_PREFIX)]
        self._real_envs: dict[str, Any] = {}

    # --- the suite API the evaluator reads ----------------------------------------------------------
    def instruction(self, task: str) -> str:
        return self.real.instruction(task)

    def max_episode_steps(self, task: str) -> int:
        return int(self.real.max_episode_steps(task))

    def trial_seed(self, task: str, trial: int, split: str) -> int:
        return int(self.real.trial_seed(task, trial, split))

    def check_task(self, task: str) -> None:
        self.real.check_task(task)

    def env_fn(self, task: str):
        raise NotImplementedError(f"{self.name}: imagined envs are batched in one model call; "
                                  f"use make_vector(task, n_envs) (the evaluator does)")

    def make_vector(self, task: str, n_envs: int) -> "WorldModelVectorEnv":
        """``n_envs`` imagined envs of ``task`` stepped by one batched model call."""
        self.check_task(task)
        return WorldModelVectorEnv(self, task, n_envs)

    # --- real first observations --------------------------------------------------------------------
    def real_reset(self, task: str, seeds: list[int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The real simulator's first observation (batched) and reset success flag at each seed."""
        if task not in self._real_envs:
            self._real_envs[task] = self.real.make_env(task)
        env = self._real_envs[task]
        obs_list, flags = [], []
        for s in seeds:
            obs, info = env.reset(seed=int(s))
            obs_list.append({k: np.asarray(obs[k]) for k in self.model.observation_keys})
            flags.append(bool(info.get("success", False)))
        return {k: np.stack([o[k] for o in obs_list]) for k in obs_list[0]}, np.array(flags)

    def close(self) -> None:
        for env in self._real_envs.values():
            env.close()
        self._real_envs.clear()

    def __repr__(self) -> str:
        return f"WorldModelSuite({self.real.name!r}, model={type(self.model).__name__})"


class WorldModelVectorEnv(VectorEnv):
    """``n_envs`` imagined episodes of one task (see the module docstring)."""

    def __init__(self, suite: WorldModelSuite, task: str, n_envs: int):
        if n_envs < 1:
            raise ValueError(f"WorldModelVectorEnv: n_envs must be >= 1, got {n_envs}")
        self.suite, self.task, self.num_envs = suite, task, int(n_envs)
        self.max_episode_steps = suite.max_episode_steps(task)
        model = suite.model
        S, A = model.features.state_dim, model.features.action_dim
        single = {STATE_KEY: spaces.Box(-np.inf, np.inf, shape=(S,), dtype=np.float32)}
        for key in model.observation_keys:
            if key.startswith(IMAGE_PREFIX):
                c, h, w = model.features.cameras[key[len(IMAGE_PREFIX):]]
                single[key] = spaces.Box(0, 255, shape=(h, w, c), dtype=np.uint8)
        self.single_observation_space = spaces.Dict(single)
        self.single_action_space = spaces.Box(-np.inf, np.inf, shape=(A,), dtype=np.float32)
        self.observation_space = spaces.Dict(
            {k: spaces.Box(b.low.min(), b.high.max(), shape=(self.num_envs, *b.shape), dtype=b.dtype)
             for k, b in single.items()})
        cams = [k for k in model.observation_keys if k.startswith(IMAGE_PREFIX)]
        self._render_key = cams[0] if cams else None
        self._last_obs: dict[str, np.ndarray] = {}
        self.action_space = spaces.Box(-np.inf, np.inf, shape=(self.num_envs, A), dtype=np.float32)
        self.metadata = {"autoreset_mode": AutoresetMode.DISABLED}
        self.render_mode = None
        self._rollout = None
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._terminated = np.zeros(self.num_envs, dtype=bool)
        self._generator = torch.Generator(device=suite.device)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Start B imagined episodes: at the real first observations of the trial ``seed``s, or at
        ``options["initial_obs"]`` (a batched observation dict, raw units)."""
        n = self.num_envs
        initial = (options or {}).get("initial_obs")
        seeds = [seed] * n if isinstance(seed, (int, np.integer)) else seed
        if seeds is not None and len(seeds) != n:
            raise ValueError(f"WorldModelVectorEnv.reset: {len(seeds)} seeds for {n} envs")
        if initial is not None:
            obs = {k: _obs_array(k, initial[k]) for k in self.suite.model.observation_keys if k in initial}
            missing = [k for k in self.suite.model.observation_keys if k not in obs]
            if missing:
                raise ValueError(f"WorldModelVectorEnv.reset: initial_obs lacks {missing}")
            bad = {k: v.shape for k, v in obs.items() if v.shape[0] != n}
            if bad:
                raise ValueError(f"WorldModelVectorEnv.reset: initial_obs needs a leading axis of {n} envs, got {bad}")
            solved = np.zeros(n, dtype=bool)
        elif seeds is not None:
            obs, solved = self.suite.real_reset(self.task, [int(s) for s in seeds])
        else:
            raise ValueError("WorldModelVectorEnv.reset: give trial seeds (the real initial states) or "
                             "options={'initial_obs': ...}")
        noise_seed = np.random.SeedSequence([int(s) for s in seeds] if seeds is not None else [0]).generate_state(1)[0]
        self._generator.manual_seed(int(noise_seed))
        tensors = {k: torch.as_tensor(v, device=self.suite.device) for k, v in obs.items()}
        self._rollout = self.suite.model.init_rollout(tensors)
        self._elapsed[:] = 0
        self._terminated[:] = False
        info = {"success": solved, "_success": np.ones(n, dtype=bool), "task": [self.suite.instruction(self.task)] * n}
        self._last_obs = {k: _obs_array(k, v) for k, v in obs.items()}
        return dict(self._last_obs), info

    def step(self, actions):
        if self._rollout is None:
            raise RuntimeError("WorldModelVectorEnv.step called before reset")
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != self.action_space.shape:
            raise ValueError(f"WorldModelVectorEnv.step: actions must have shape {self.action_space.shape}, "
                             f"got {actions.shape}")
        out, self._rollout = self.suite.model.step(
            self._rollout, torch.as_tensor(actions, device=self.suite.device), generator=self._generator)
        self._elapsed += 1
        success_p = out.success.detach().cpu().numpy()
        done_p = out.done.detach().cpu().numpy()
        success = success_p > self.suite.success_threshold
        if self.suite.terminate_on_done:
            self._terminated |= done_p > 0.5
        terminated = self._terminated.copy()
        truncated = (self._elapsed >= self.max_episode_steps) & ~terminated
        obs = {k: _obs_array(k, v.detach().cpu().numpy()) for k, v in out.obs.items()}
        self._last_obs = obs
        info = {"success": success, "_success": np.ones(self.num_envs, dtype=bool), "success_prob": success_p,
                "done_prob": done_p, "task": [self.suite.instruction(self.task)] * self.num_envs}
        return obs, out.reward.detach().cpu().numpy().astype(np.float32), terminated, truncated, info

    def call(self, name: str, *args, **kwargs):
        if name == "render":  # an image model's latest frames; none for a state model (no videos then)
            if self._render_key is None or self._render_key not in self._last_obs:
                return (None,) * self.num_envs
            return tuple(self._last_obs[self._render_key])
        raise NotImplementedError(f"WorldModelVectorEnv: {name!r} is not available in imagination "
                                  f"(e.g. perturb needs the real simulator)")

    def close_extras(self, **kwargs) -> None:
        self._rollout = None


def world_model_suite(path: str, env: str, policy: Any = None, device: str | torch.device = "cpu",
                      **kwargs: Any) -> WorldModelSuite:
    """The world model at ``path`` posing as suite ``env`` (which must be the suite it was trained
    on), checked against the policy that will run in it; ``kwargs`` go to ``WorldModelSuite``."""
    from envs import make_suite
    from robopolicy.train.checkpoint import load_train_config, resolve_checkpoint
    from robopolicy.world_model.checkpoint import load_world_model

    step_dir = resolve_checkpoint(path)
    model = load_world_model(step_dir, device=device)
    trained_on = load_train_config(step_dir).get("env")
    if trained_on is not None and trained_on != env:
        raise ValueError(f"world model {step_dir} was trained on {trained_on!r}, the evaluation asks for {env!r}")
    if policy is not None:
        check_policy_fits(model, policy.features, str(step_dir))
    cams = [k[len(IMAGE_PREFIX):] for k in model.observation_keys if k.startswith(IMAGE_PREFIX)]
    if cams:  # the real first frames come from the real suite's camera at the model's frame size
        _, h, _ = model.features.cameras[cams[0]]
        real = make_suite(env, obs="image", image_size=int(h), cameras=cams)
    else:
        real = make_suite(env, obs="state")
    return WorldModelSuite(model, real, device=device, **kwargs)


def check_policy_fits(model: WorldModel, features: Any, where: str = "the world model") -> None:
    """A clear error when a policy reads observations the world model does not predict (a camera it
    lacks, a camera at another size, another state width)."""
    cams = getattr(features, "cameras", {})
    have = set(model.observation_keys)
    need = {IMAGE_PREFIX + c for c in cams} | ({STATE_KEY} if features.state_dim is not None else set())
    if need - have:
        raise ValueError(f"the policy needs {sorted(need - have)}, which world model {where} does not "
                         f"predict (it predicts {sorted(have)})")
    for cam, shape in cams.items():
        theirs = tuple(model.features.cameras.get(cam, ()))
        if tuple(shape) != theirs:
            raise ValueError(f"the policy reads camera {cam!r} at (C, H, W) {tuple(shape)}, world model {where} "
                             f"predicts it at {theirs}: train the policy at the model's image size")
    if features.state_dim is not None and features.state_dim != model.features.state_dim:
        raise ValueError(f"the policy's observation.state has {features.state_dim} dims, the world "
                         f"model's {model.features.state_dim}")
