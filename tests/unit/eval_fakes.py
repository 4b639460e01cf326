"""Tiny stand-ins for the evaluator/deploy tests: a point-reaching suite (pure numpy, no MuJoCo)
and policies with known behaviour (exact planner, do-nothing, expert wrapper, recorder)."""

from __future__ import annotations

import functools
import zlib

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from robopolicy.policies.base import Policy, PolicyConfig
from robopolicy.types import IMAGE_PREFIX, STATE_KEY, FeatureSpec, PolicyState

STEP = 0.05          # metres moved per step at |action| = 1 (per axis)
SUCCESS_RADIUS = 0.02
IMG = 8              # camera image side


class PointEnv(gym.Env):
    """A point moving in the plane toward a goal; state = (x, y, goal_x, goal_y)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, task: str, max_steps: int = 40, camera: bool = False, render_mode: str | None = "rgb_array"):
        self.task, self.max_steps, self.camera, self.render_mode = task, max_steps, camera, render_mode
        obs = {STATE_KEY: spaces.Box(-np.inf, np.inf, (4,), np.float32)}
        if camera:
            obs[IMAGE_PREFIX + "cam"] = spaces.Box(0, 255, (IMG, IMG, 3), np.uint8)
        self.observation_space = spaces.Dict(obs)
        self.action_space = spaces.Box(-1, 1, (2,), np.float32)
        self.pos = np.zeros(2)
        self.goal = np.zeros(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-0.5, 0.5, 2)
        goal_side = 1.0 if self.task == "reach-a" else -1.0
        self.goal = np.array([goal_side * 0.3, self.np_random.uniform(-0.3, 0.3)])
        self.t = 0
        return self._obs(), {"success": False}

    def step(self, action):
        self.pos = self.pos + STEP * np.clip(np.asarray(action, dtype=np.float64), -1, 1)
        self.t += 1
        success = bool(np.linalg.norm(self.pos - self.goal) < SUCCESS_RADIUS)
        return self._obs(), 0.0, False, self.t >= self.max_steps, {"success": success}

    def _frame(self) -> np.ndarray:
        img = np.full((IMG, IMG, 3), 40, np.uint8)
        ij = np.clip(((self.pos + 1) / 2 * IMG).astype(int), 0, IMG - 1)
        img[ij[1], ij[0]] = (255, 0, 0)
        return img

    def _obs(self):
        out = {STATE_KEY: np.concatenate([self.pos, self.goal]).astype(np.float32)}
        if self.camera:
            out[IMAGE_PREFIX + "cam"] = self._frame()
        return out

    def render(self):
        return self._frame() if self.render_mode == "rgb_array" else None


class PointSuite:
    """The suite API of envs.make_suite, for PointEnv: two tasks (goal on the right / left)."""

    def __init__(self, camera: bool = False, max_steps: int = 40, render_mode: str | None = "rgb_array"):
        self.name = "point"
        self.tasks = ["reach-a", "reach-b"]
        self.fps = 10.0
        self.cameras = ["cam"] if camera else []
        self.obs = "image" if camera else "state"
        self._max_steps, self._render_mode = max_steps, render_mode

    def instruction(self, task):
        return f"reach the goal on the {'right' if task == 'reach-a' else 'left'}"

    def max_episode_steps(self, task):
        return self._max_steps

    def trial_seed(self, task, trial, split):
        return (2**31 if split == "eval" else 0) + (zlib.crc32(task.encode()) % 2**15) * 2**16 + trial

    def env_fn(self, task):
        return functools.partial(PointEnv, task, self._max_steps, bool(self.cameras), self._render_mode)

    def make_env(self, task):
        return self.env_fn(task)()


def plan(start: np.ndarray, goal: np.ndarray, n: int) -> np.ndarray:
    """Exact open-loop plan of ``n`` actions from ``start`` to ``goal`` (then standing still)."""
    out, p = np.zeros((n, 2), np.float32), start.astype(np.float64).copy()
    for j in range(n):
        a = np.clip((goal - p) / STEP, -1, 1)
        out[j] = a
        p = p + STEP * a
    return out


def steps_to_goal(start: np.ndarray, goal: np.ndarray) -> int:
    p, k = start.astype(np.float64).copy(), 0
    while np.linalg.norm(p - goal) >= SUCCESS_RADIUS:
        p, k = p + STEP * np.clip((goal - p) / STEP, -1, 1), k + 1
    return k


def features(cameras=None, fps=10.0, use_language=False, state_dim=4) -> FeatureSpec:
    return FeatureSpec(action_dim=2, state_dim=state_dim, cameras=cameras or {}, fps=fps, use_language=use_language)


class GoalPolicy(Policy):
    """Plans an exact chunk from the newest state toward the goal, plus optional sampling noise.
    Records the last obs it saw in ``state.info`` (tests inspect history stacking)."""

    def __init__(self, n_action_steps=4, n_obs_steps=2, noise=0.0, feats: FeatureSpec | None = None):
        # horizon as a real family counts it: from the oldest observed frame to the chunk's end
        super().__init__(PolicyConfig(n_obs_steps=n_obs_steps, horizon=n_obs_steps - 1 + n_action_steps,
                                      n_action_steps=n_action_steps),
                         feats or features(), None)
        self.noise = noise
        self.w = torch.nn.Parameter(torch.zeros(1))

    def init_state(self, batch_size):
        return PolicyState(tensors={"calls": torch.zeros(batch_size)})

    def act(self, obs, state):
        s = obs[STATE_KEY][:, -1].cpu().numpy()
        n = self.config.n_action_steps
        chunk = torch.from_numpy(np.stack([plan(x[:2], x[2:4], n) for x in s]))
        if self.noise:
            chunk = chunk + self.noise * torch.randn_like(chunk)
        info = {"last_obs": {k: (v.clone() if torch.is_tensor(v) else v) for k, v in obs.items()}}
        return chunk, PolicyState(tensors={"calls": state.tensors["calls"] + 1}, step=state.step + 1, info=info)


class ZeroPolicy(GoalPolicy):
    """Never moves: every episode must fail."""

    def act(self, obs, state):
        chunk, state = super().act(obs, state)
        return torch.zeros_like(chunk), state


class ExpertPolicy(Policy):
    """Wraps a suite's scripted expert as a one-action-per-chunk policy (experts are closed loop)."""

    def __init__(self, suite, task, state_dim: int, action_dim: int, cameras=None):
        super().__init__(PolicyConfig(n_obs_steps=1, horizon=1, n_action_steps=1),
                         FeatureSpec(action_dim=action_dim, state_dim=state_dim, cameras=cameras or {},
                                     fps=suite.fps), None)
        self.suite, self.task = suite, task
        self.w = torch.nn.Parameter(torch.zeros(1))

    def init_state(self, batch_size):
        experts = [self.suite.make_expert(self.task) for _ in range(batch_size)]
        for e in experts:
            e.reset()
        return PolicyState(info={"experts": experts})

    def act(self, obs, state):
        s = obs[STATE_KEY][:, -1].cpu().numpy()
        a = np.stack([e.act({STATE_KEY: x}) for e, x in zip(state.info["experts"], s)])
        return torch.from_numpy(a).float()[:, None], PolicyState(info=state.info, step=state.step + 1)
