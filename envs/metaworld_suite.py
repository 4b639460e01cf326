"""Meta-World v3 (metaworld 3.1.1) suites: ``metaworld/mt1/<task>``, ``metaworld/mt10``,
``metaworld/mt50``, with Meta-World's own scripted experts (``metaworld.policies``), except for
the tasks where ours do better (``envs.metaworld_experts``).

Initial states. Meta-World draws each episode's object and goal positions as one "rand vec" from
the task's ``_random_reset_space`` (with task-specific rejection loops, e.g. goal not too close to
the puck). Its benchmarks freeze 50 such vectors per task. We instead switch the env to its own
seeded sampling path (``seeded_rand_vec``) and hand it a generator seeded by ``reset(seed=...)``:
the env's own sampler and rejection loops run unchanged, every seed maps to one fixed
configuration, and there is no limit of 50 configurations per split. ``Suite.trial_seed`` keeps
train and eval seeds apart, so the two splits never share an initial state.

Observation: the 39-d Meta-World vector with the goal visible (the MT setting), as float32.
"""

from __future__ import annotations

import pickle
import warnings
from typing import Any

import metaworld.env_dict as mw_envs
import mujoco
import numpy as np
from gymnasium import spaces
from metaworld.policies import ENV_POLICY_MAP
from metaworld.types import Task

from envs.base import STATE_KEY, SimEnv, Suite
from envs.metaworld_experts import EXPERTS
from envs.metaworld_instructions import INSTRUCTIONS
from envs.render import rotate_180

ALL_TASKS: list[str] = list(mw_envs.ALL_V3_ENVIRONMENTS)
MT10_TASKS: list[str] = list(mw_envs.MT10_V3)
MT50_TASKS: list[str] = list(mw_envs.MT50_V3)

DEFAULT_CAMERAS = ["corner", "gripperPOV"]
MAX_EPISODE_STEPS = 500  # Meta-World's max_path_length
# corner* cameras are defined with their up axis pointing down (a 180 degree roll).
CAMERA_ORIENT = {name: rotate_180 for name in ("corner", "corner2", "corner3", "corner4")}
CAMERAS = ["corner", "corner2", "corner3", "corner4", "topview", "gripperPOV", "behindGripper"]

# Perturbation (MetaWorldEnv.perturb). In the reach tasks the puck is a distractor: the goal moves.
GOAL_PERTURB_TASKS = {"reach-v3", "reach-wall-v3"}
PERTURB_XY_LOW, PERTURB_XY_HIGH = np.array([-0.35, 0.40]), np.array([0.35, 0.90])  # reachable table
_OBJECT_MATCH = 0.15     # the object's free body lies this close to its observed position (m)
_PENETRATION_TOL = 0.002  # extra interpenetration (m) a displaced object may start with

_OBJ = [f"{part}" for obj in ("obj1", "obj2")
        for part in (f"{obj}_x", f"{obj}_y", f"{obj}_z", f"{obj}_qw", f"{obj}_qx", f"{obj}_qy", f"{obj}_qz")]
_FRAME = ["hand_x", "hand_y", "hand_z", "gripper_opening", *_OBJ]
STATE_NAMES = [*_FRAME, *(f"prev_{n}" for n in _FRAME), "goal_x", "goal_y", "goal_z"]


def _check_task_name(task: str) -> None:
    if task not in mw_envs.ALL_V3_ENVIRONMENTS:
        raise ValueError(f"unknown Meta-World v3 task {task!r}; tasks: {ALL_TASKS}")


class MetaWorldEnv(SimEnv):
    """One Meta-World v3 task, goal observable, truncated at ``max_episode_steps``."""

    def __init__(self, task: str, obs: str = "state", image_size: int = 84,
                 cameras: list[str] | None = None, max_episode_steps: int = MAX_EPISODE_STEPS,
                 render_size: int = 256, render_mode: str | None = "rgb_array"):
        _check_task_name(task)
        cls = mw_envs.ALL_V3_ENVIRONMENTS[task]
        env = cls()  # render_mode None: frames come from our CameraRenderer (fast settings)
        # The task data layout of Meta-World's own benchmarks (metaworld._make_tasks), with the
        # goal observable as in MT1/MT10/MT50. Its rand_vec is replaced at every reset below.
        kwargs = dict(mw_envs.ML1_ARGS_KWARGS[task]["kwargs"])
        kwargs.pop("task_id", None)
        placeholder = np.asarray(env._random_reset_space.low, dtype=np.float64)
        env.set_task(Task(env_name=task, data=pickle.dumps(
            {**kwargs, "rand_vec": placeholder, "env_cls": cls, "partially_observable": False})))
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        # We truncate ourselves; Meta-World raises ValueError when stepped past its own limit.
        env.max_path_length = 2**31 - 1
        self._env = env
        self._last_obs: np.ndarray | None = None
        self._success = False
        fps = 1.0 / (env.frame_skip * env.model.opt.timestep)
        cams = (cameras or DEFAULT_CAMERAS) if obs == "image" else []
        super().__init__(task=task, instruction=INSTRUCTIONS[task],
                         max_episode_steps=max_episode_steps, fps=fps, cameras=cams,
                         image_size=image_size, render_camera="corner",
                         camera_orient=CAMERA_ORIENT, render_size=render_size,
                         render_mode=render_mode)
        self.fps = fps
        self._init_spaces(39, spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32))

    @property
    def unwrapped_metaworld(self):
        """The underlying Meta-World env (for reward terms or debugging)."""
        return self._env

    @property
    def rand_vec(self) -> np.ndarray:
        """The object/goal configuration drawn at the last reset."""
        return np.array(self._env._last_rand_vec, dtype=np.float64)

    def _sim_model_data(self):
        return self._env.model, self._env.data

    def _sim_reset(self, rng: np.random.Generator) -> None:
        self._env.np_random = rng  # the env's seeded rand-vec sampler draws from this generator
        obs, _ = self._env.reset()
        self._last_obs = obs
        self._success = False

    def _sim_step(self, action: np.ndarray) -> float:
        if self._last_obs is None:
            raise RuntimeError(f"{self.task_name}: step() called before reset()")
        obs, reward, _, _, info = self._env.step(action)
        self._last_obs = obs
        self._success = bool(info.get("success", 0.0) > 0.5)
        return float(reward)

    def _sim_success(self) -> bool:
        return self._success

    def _sim_state(self) -> np.ndarray:
        if self._last_obs is None:
            raise RuntimeError(f"{self.task_name}: observation requested before reset()")
        return self._last_obs.astype(np.float32)

    def _sim_close(self) -> None:
        self._env.close()

    def _sim_perturb(self, rng: np.random.Generator, distance: float) -> None:
        """Move the manipulated object (its free joint) by ``distance`` in the table plane, in a
        direction drawn from ``rng``; directions that leave the reachable table or push the object
        into another body are skipped (the next of 16 directions around the drawn one is tried).
        Reach tasks move the goal instead. Articulated objects (doors, drawers, buttons, ...)
        cannot be displaced: NotImplementedError."""
        env, model, data = self._env, self._env.model, self._env.data
        start = float(rng.uniform(0.0, 2 * np.pi))
        angles = start + 2 * np.pi / 16 * np.array([0, *[k * sgn for k in range(1, 9) for sgn in (1, -1)]][:16])
        if self.task_name in GOAL_PERTURB_TASKS:
            goal = np.array(env._target_pos, dtype=np.float64)
            for a in angles:
                xy = goal[:2] + distance * np.array([np.cos(a), np.sin(a)])
                if np.all(xy >= PERTURB_XY_LOW) and np.all(xy <= PERTURB_XY_HIGH):
                    break
            env._target_pos = np.array([*xy, goal[2]])
            model.site("goal").pos = env._target_pos
        else:
            qadr, vadr, geoms = self._object_joint()
            home = data.qpos[qadr:qadr + 2].copy()
            base = self._penetration(geoms)
            best: tuple[float, np.ndarray] | None = None
            for a in angles:
                xy = home + distance * np.array([np.cos(a), np.sin(a)])
                if not (np.all(xy >= PERTURB_XY_LOW) and np.all(xy <= PERTURB_XY_HIGH)):
                    continue
                data.qpos[qadr:qadr + 2] = xy
                mujoco.mj_forward(model, data)
                excess = self._penetration(geoms) - base
                if best is None or excess < best[0]:
                    best = (excess, xy)
                if excess <= _PENETRATION_TOL:
                    break
            if best is None:  # already off the reachable table: move it back toward the centre
                centre = (PERTURB_XY_LOW + PERTURB_XY_HIGH) / 2
                best = (0.0, home + distance * (centre - home) / max(np.linalg.norm(centre - home), 1e-9))
            data.qpos[qadr:qadr + 2] = best[1]
            data.qvel[vadr:vadr + 6] = 0.0
        mujoco.mj_forward(model, data)
        self._last_obs = env._get_obs()  # observation of the displaced state (prev frame = last step)

    def _object_joint(self) -> tuple[int, int, np.ndarray]:
        """(qpos address, dof address, geom ids) of the free joint of the object in obs[4:7]."""
        env, model, data = self._env, self._env.model, self._env.data
        obj = np.asarray(env._get_pos_objects(), dtype=np.float64)[:3]
        best = None
        for j in np.flatnonzero(model.jnt_type == mujoco.mjtJoint.mjJNT_FREE):
            gap = float(np.linalg.norm(data.xpos[model.jnt_bodyid[j]] - obj))
            if gap < _OBJECT_MATCH and (best is None or gap < best[0]):
                best = (gap, int(j))
        if best is None:
            raise NotImplementedError(f"MetaWorldEnv ({self.task_name!r}): perturb() needs a free object; "
                                      "this task's object is articulated (hinge/slide joints)")
        body = model.jnt_bodyid[best[1]]
        geoms = np.flatnonzero(model.body_rootid[model.geom_bodyid] == body)
        return int(model.jnt_qposadr[best[1]]), int(model.jnt_dofadr[best[1]]), geoms

    def _penetration(self, geoms: np.ndarray) -> float:
        """Deepest interpenetration (m) between the given geoms and anything else."""
        data = self._env.data
        depth = 0.0
        for c in data.contact[:data.ncon]:
            if (c.geom1 in geoms) != (c.geom2 in geoms):
                depth = max(depth, -float(c.dist))
        return depth


class MetaWorldExpert:
    """The scripted expert for one task, reading ``observation.state``: our own state machine
    (``envs.metaworld_experts.EXPERTS``) where Meta-World's shipped policy is below our 95% bar,
    Meta-World's scripted policy otherwise."""

    def __init__(self, task: str):
        _check_task_name(task)
        self.task = task
        self._ours = EXPERTS[task]() if task in EXPERTS else None
        self._policy = None if self._ours is not None else ENV_POLICY_MAP[task]()

    def reset(self) -> None:
        if self._ours is not None:
            self._ours.reset()  # Meta-World's policies are stateless; ours keep a phase

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self._ours is not None:
            return self._ours.act(obs)
        state = np.asarray(obs[STATE_KEY], dtype=np.float64)
        if state.shape != (39,):
            raise ValueError(f"{self.task} expert needs a 39-d observation.state, got {state.shape}")
        with warnings.catch_warnings():  # their P-gains warn about clipping on every step
            warnings.simplefilter("ignore")
            action = self._policy.get_action(state)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


class MetaWorldSuite(Suite):
    """A list of Meta-World v3 tasks sharing obs mode and cameras."""

    def __init__(self, name: str, tasks: list[str], obs: str = "state", image_size: int = 84,
                 cameras: list[str] | None = None):
        for task in tasks:
            _check_task_name(task)
        cams = list(cameras) if cameras else list(DEFAULT_CAMERAS)
        unknown = [c for c in cams if c not in CAMERAS]
        if unknown:
            raise ValueError(f"{name}: unknown cameras {unknown}; available: {CAMERAS}")
        fps = 80.0  # frame_skip 5 x timestep 0.0025 s in every v3 task (checked by the tests)
        super().__init__(name, tasks, fps, obs, image_size, cams)

    def instruction(self, task: str) -> str:
        self.check_task(task)
        return INSTRUCTIONS[task]

    def max_episode_steps(self, task: str) -> int:
        self.check_task(task)
        return MAX_EPISODE_STEPS

    def make_env(self, task: str) -> MetaWorldEnv:
        self.check_task(task)
        return MetaWorldEnv(task, obs=self.obs, image_size=self.image_size,
                            cameras=self.cameras or None)

    def make_expert(self, task: str) -> MetaWorldExpert:
        self.check_task(task)
        return MetaWorldExpert(task)


def make_metaworld_suite(rest: str, **kw: Any) -> MetaWorldSuite:
    """``rest`` is what follows 'metaworld/': 'mt1/<task>', 'mt10' or 'mt50'."""
    kind, _, task = rest.partition("/")
    if kind == "mt1":
        _check_task_name(task)
        return MetaWorldSuite(f"metaworld/mt1/{task}", [task], **kw)
    if kind in ("mt10", "mt50") and not task:
        tasks = MT10_TASKS if kind == "mt10" else MT50_TASKS
        return MetaWorldSuite(f"metaworld/{kind}", tasks, **kw)
    raise ValueError(f"unknown Meta-World suite 'metaworld/{rest}'; "
                     "use metaworld/mt1/<task>, metaworld/mt10 or metaworld/mt50")


def metaworld_suite_names() -> list[str]:
    return [*(f"metaworld/mt1/{t}" for t in ALL_TASKS), "metaworld/mt10", "metaworld/mt50"]
