"""What every simulated task suite offers, and the gymnasium env base the simulator adapters share.

``Suite`` is the object the rest of the project codes against (``envs.make_suite``): task names,
instructions, fixed per-trial seeds, env and expert factories. ``SimEnv`` turns one simulator into
LeRobot-named observations (``observation.state`` float32, ``observation.images.<camera>`` uint8
HxWx3), ``info["success"]`` and a step limit, so each adapter only writes its physics glue.
"""

from __future__ import annotations

import functools
import zlib
from typing import Any, Callable, Literal, Protocol, Sequence

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from envs.render import CameraRenderer, Orient

STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."
ObsMode = Literal["state", "image"]
Split = Literal["train", "eval"]

# trial_seed layout: eval seeds live in [2**31, 2**32), train seeds below, so the two splits can
# never share an initial state; 2**16 trials per task; seeds stay below 2**32 for legacy RNGs.
_MAX_TRIALS = 2**16
_SPLIT_BASE = {"train": 0, "eval": 2**31}


class Expert(Protocol):
    """A scripted demonstrator: ``act`` maps one (unbatched) observation dict to an action."""

    def reset(self) -> None: ...

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray: ...


def trial_seed(task: str, trial: int, split: str) -> int:
    """(task, trial, split) -> a fixed reset seed, the same in every suite that offers ``task``."""
    if split not in _SPLIT_BASE:
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    if not isinstance(trial, (int, np.integer)) or not 0 <= trial < _MAX_TRIALS:
        raise ValueError(f"trial must be an int in [0, {_MAX_TRIALS}), got {trial!r}")
    task_slot = zlib.crc32(task.encode()) % 2**15  # stable across runs, unlike hash()
    return _SPLIT_BASE[split] + task_slot * _MAX_TRIALS + int(trial)


class Suite:
    """A set of tasks sharing a simulator, an observation mode and a control rate."""

    name: str
    """Suite name as given to ``make_suite``."""
    tasks: list[str]
    """Task names in the suite."""
    fps: float
    """Control frequency (steps per second of simulated time), stored as the dataset fps."""
    obs: ObsMode
    """'state' or 'image' (image also keeps ``observation.state``)."""
    image_size: int
    """Height and width of every camera image."""
    cameras: list[str]
    """Cameras rendered into observations (empty when obs='state')."""

    def __init__(self, name: str, tasks: Sequence[str], fps: float, obs: str, image_size: int,
                 cameras: Sequence[str]):
        if obs not in ("state", "image"):
            raise ValueError(f"suite {name!r}: obs must be 'state' or 'image', got {obs!r}")
        if not isinstance(image_size, (int, np.integer)) or image_size <= 0:
            raise ValueError(f"suite {name!r}: image_size must be a positive int, got {image_size!r}")
        if obs == "image" and not cameras:
            raise ValueError(f"suite {name!r}: obs='image' needs at least one camera")
        self.name = name
        self.tasks = list(tasks)
        self.fps = float(fps)
        self.obs = obs  # type: ignore[assignment]
        self.image_size = int(image_size)
        self.cameras = list(cameras) if obs == "image" else []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, tasks={len(self.tasks)}, obs={self.obs!r})"

    # --- per task --------------------------------------------------------------------------------
    def instruction(self, task: str) -> str:
        raise NotImplementedError

    def max_episode_steps(self, task: str) -> int:
        raise NotImplementedError

    def make_env(self, task: str) -> gym.Env:
        raise NotImplementedError

    def make_expert(self, task: str) -> Expert:
        raise NotImplementedError

    def trial_seed(self, task: str, trial: int, split: Split) -> int:
        """Seed for ``env.reset(seed=...)``: the same (task, trial, split) always gives the same
        initial state; train and eval seeds never coincide."""
        self.check_task(task)
        return trial_seed(task, trial, split)

    def env_fn(self, task: str) -> Callable[[], gym.Env]:
        """A zero-argument, picklable env constructor (for AsyncVectorEnv / multiprocessing)."""
        self.check_task(task)
        return functools.partial(_call_make_env, self, task)

    def check_task(self, task: str) -> None:
        if task not in self.tasks:
            raise ValueError(f"suite {self.name!r} has no task {task!r}; tasks: {self.tasks}")


def _call_make_env(suite: Suite, task: str) -> gym.Env:
    return suite.make_env(task)


class SimEnv(gym.Env):
    """Base of every suite env. Subclasses build their simulator in ``__init__`` and then call
    ``_init_spaces``; they implement the ``_sim_*`` hooks below.

    No termination on success (the evaluator decides; an episode succeeds if any step reported
    success); truncation at ``max_episode_steps``; stepping on after truncation keeps working and
    keeps reporting ``truncated=True`` until ``reset``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, *, task: str, instruction: str, max_episode_steps: int, fps: float,
                 cameras: Sequence[str], image_size: int, render_camera: str,
                 camera_orient: dict[str, Orient] | None = None, render_size: int = 256,
                 render_mode: str | None = "rgb_array"):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.task_name = task
        self.task_description = instruction
        self.max_episode_steps = int(max_episode_steps)
        self.cameras = list(cameras)
        self.image_size = int(image_size)
        self.render_camera = render_camera
        self.render_size = int(render_size)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": fps}
        self._camera_orient = camera_orient or {}
        self._renderers: dict[int, CameraRenderer] = {}
        self._elapsed = 0
        self._episode_seed: int | None = None

    # --- hooks for the simulator adapters ----------------------------------------------------------
    def _sim_model_data(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        raise NotImplementedError

    def _sim_reset(self, rng: np.random.Generator) -> None:
        """Put the simulator in the initial state drawn from ``rng`` (all randomness from it)."""
        raise NotImplementedError

    def _sim_step(self, action: np.ndarray) -> float:
        """Apply one (validated, clipped) action; return the reward."""
        raise NotImplementedError

    def _sim_success(self) -> bool:
        raise NotImplementedError

    def _sim_state(self) -> np.ndarray:
        raise NotImplementedError

    def _sim_close(self) -> None:
        pass

    def _sim_perturb(self, rng: np.random.Generator, distance: float) -> None:
        """Displace the task's object by ``distance`` (metres) in a direction drawn from ``rng``."""
        raise NotImplementedError(f"{type(self).__name__} (task {self.task_name!r}) does not implement "
                                  "perturb(): it has no displaceable object")

    # --- shared machinery ------------------------------------------------------------------------------
    def _init_spaces(self, state_dim: int, action_space: spaces.Box) -> None:
        obs_spaces: dict[str, spaces.Space] = {
            STATE_KEY: spaces.Box(-np.inf, np.inf, shape=(state_dim,), dtype=np.float32)
        }
        for cam in self.cameras:
            obs_spaces[IMAGE_PREFIX + cam] = spaces.Box(
                0, 255, shape=(self.image_size, self.image_size, 3), dtype=np.uint8)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = action_space
        model, _ = self._sim_model_data()
        names = {model.camera(i).name for i in range(model.ncam)}
        for cam in [*self.cameras, self.render_camera]:
            if cam not in names:
                raise ValueError(f"{self.task_name}: camera {cam!r} is not in the model; "
                                 f"cameras: {sorted(names)}")

    def _renderer(self, size: int) -> CameraRenderer:
        if size not in self._renderers:
            model, _ = self._sim_model_data()
            self._renderers[size] = CameraRenderer(model, size, size, self._camera_orient)
        return self._renderers[size]

    def _obs(self) -> dict[str, np.ndarray]:
        state = np.asarray(self._sim_state(), dtype=np.float32)
        out = {STATE_KEY: state}
        if self.cameras:
            _, data = self._sim_model_data()
            renderer = self._renderer(self.image_size)
            for cam in self.cameras:
                out[IMAGE_PREFIX + cam] = renderer.render(data, cam)
        return out

    def _info(self, success: bool) -> dict[str, Any]:
        return {"task": self.task_description, "success": success, "is_success": success}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)  # reseeds self.np_random when a seed is given
        self._sim_reset(self.np_random)
        self._elapsed = 0
        self._episode_seed = None if seed is None else int(seed)
        return self._obs(), self._info(bool(self._sim_success()))

    PERTURB_DISTANCE = 0.06
    """Default displacement of ``perturb`` (metres)."""
    _PERTURB_STREAM = 0x7E57  # separates the perturbation's random stream from the reset's

    def perturb(self, rng: np.random.Generator | None = None,
                distance: float | None = None) -> dict[str, np.ndarray]:
        """Displace the task's object once, mid-episode (a recovery test), and return the new
        observation. ``rng`` None: a generator seeded from this episode's reset seed, so the same
        trial always gets the same displacement (a vector env can call it without arguments);
        ``distance`` None: ``PERTURB_DISTANCE``. Raises NotImplementedError for envs without a
        displaceable object."""
        if rng is None:
            rng = (np.random.default_rng([self._episode_seed, self._PERTURB_STREAM])
                   if self._episode_seed is not None else self.np_random)
        distance = self.PERTURB_DISTANCE if distance is None else float(distance)
        if not distance > 0:
            raise ValueError(f"{self.task_name}: perturb distance must be > 0, got {distance}")
        self._sim_perturb(rng, distance)
        return self._obs()

    def step(self, action):
        action = np.asarray(action, dtype=np.float32)
        shape = self.action_space.shape
        if action.shape != shape:
            raise ValueError(f"{self.task_name}: action must have shape {shape}, got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"{self.task_name}: action has non-finite values: {action}")
        action = np.clip(action, self.action_space.low, self.action_space.high)
        reward = float(self._sim_step(action))
        self._elapsed += 1
        success = bool(self._sim_success())
        truncated = self._elapsed >= self.max_episode_steps
        return self._obs(), reward, False, truncated, self._info(success)

    def render(self) -> np.ndarray | None:
        """An RGB frame of ``render_camera`` at ``render_size`` (for videos), independent of obs."""
        if self.render_mode is None:
            return None
        _, data = self._sim_model_data()
        return self._renderer(self.render_size).render(data, self.render_camera)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        self._sim_close()
        super().close()
