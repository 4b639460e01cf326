"""robosuite 1.5.2 suites: ``robosuite/lift``, ``robosuite/stack``, ``robosuite/pickplacecan``.

Panda with robosuite's BASIC composite controller, whose arm part is OSC_POSE with delta inputs:
action = [dx, dy, dz, dax, day, daz, gripper] in [-1, 1], scaled by robosuite to 5 cm and 0.5 rad
per step (axis-angle in the world-aligned base frame); gripper -1 opens, +1 closes. 20 Hz control.

State: a flat float32 vector, robot proprio then object terms, in the order of ``state_names``
(the expert reads it by name through ``StateLayout``). Frames come from our ``CameraRenderer``
(fast settings, right way up), not robosuite's own renderer.

Initial states: robosuite draws object placements and joint noise from ``env.rng``; each reset
reseeds that generator in place from the ``reset(seed=...)`` generator, so a seed fixes the scene.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces

from envs.base import STATE_KEY, SimEnv, Suite

PROPRIO_KEYS: list[tuple[str, int]] = [
    ("robot0_eef_pos", 3), ("robot0_eef_quat", 4), ("robot0_gripper_qpos", 2),
    ("robot0_gripper_qvel", 2), ("robot0_joint_pos_cos", 7), ("robot0_joint_pos_sin", 7),
    ("robot0_joint_vel", 7),
]
DEFAULT_CAMERAS = ["agentview", "robot0_eye_in_hand"]
FPS = 20.0


@dataclass(frozen=True)
class TaskSpec:
    """What differs between the robosuite tasks we offer."""

    env_name: str
    """robosuite environment class name."""
    instruction: str
    """Natural-language instruction."""
    object_keys: tuple[tuple[str, int], ...]
    """robosuite observation keys (and widths) appended to the proprio state, in order."""
    max_episode_steps: int
    """Step limit (the expert needs well under half of it)."""


TASKS: dict[str, TaskSpec] = {
    "lift": TaskSpec("Lift", "lift the red cube",
                     (("cube_pos", 3), ("cube_quat", 4), ("gripper_to_cube_pos", 3)), 200),
    "stack": TaskSpec("Stack", "stack the red cube on top of the green cube",
                      (("cubeA_pos", 3), ("cubeA_quat", 4), ("cubeB_pos", 3), ("cubeB_quat", 4),
                       ("gripper_to_cubeA", 3), ("gripper_to_cubeB", 3), ("cubeA_to_cubeB", 3)), 300),
    "pickplacecan": TaskSpec("PickPlaceCan", "pick up the can and place it in its bin",
                             (("Can_pos", 3), ("Can_quat", 4), ("Can_to_robot0_eef_pos", 3),
                              ("Can_to_robot0_eef_quat", 4)), 300),
}


class StateLayout:
    """Name -> slice of the flat state vector of one task."""

    def __init__(self, task: str):
        if task not in TASKS:
            raise ValueError(f"unknown robosuite task {task!r}; tasks: {sorted(TASKS)}")
        self.keys = [*PROPRIO_KEYS, *TASKS[task].object_keys]
        self.slices: dict[str, slice] = {}
        start = 0
        for key, width in self.keys:
            self.slices[key] = slice(start, start + width)
            start += width
        self.dim = start

    def names(self) -> list[str]:
        return [f"{key}_{i}" for key, width in self.keys for i in range(width)]

    def get(self, state: np.ndarray, key: str) -> np.ndarray:
        return np.asarray(state[self.slices[key]], dtype=np.float64)


def _import_robosuite():
    """Import robosuite, quiet its per-env INFO/WARNING lines (controller-config notes about body
    parts the Panda lacks), and make its own renderer (if anyone uses it) return images right way
    up."""
    import robosuite
    import robosuite.macros as macros
    from robosuite.utils.log_utils import ROBOSUITE_DEFAULT_LOGGER

    macros.IMAGE_CONVENTION = "opencv"
    ROBOSUITE_DEFAULT_LOGGER.setLevel(logging.ERROR)
    return robosuite


class RobosuiteEnv(SimEnv):
    """One robosuite task with a Panda on OSC_POSE (see the module docstring)."""

    def __init__(self, task: str, obs: str = "state", image_size: int = 84,
                 cameras: list[str] | None = None, max_episode_steps: int | None = None,
                 render_size: int = 256, render_mode: str | None = "rgb_array"):
        self.layout = StateLayout(task)
        spec = TASKS[task]
        robosuite = _import_robosuite()
        from robosuite.controllers import load_composite_controller_config

        controller = load_composite_controller_config(controller="BASIC", robot="Panda")
        self._env = robosuite.make(
            spec.env_name, robots="Panda", controller_configs=controller,
            has_renderer=False, has_offscreen_renderer=False, use_camera_obs=False,
            use_object_obs=True, reward_shaping=True, control_freq=int(FPS),
            ignore_done=True,       # we truncate; robosuite would flag done at its horizon
            horizon=10**9,
            hard_reset=False,       # a hard reset reloads the XML every episode (slow)
        )
        self._raw: dict[str, np.ndarray] | None = None
        cams = (cameras or DEFAULT_CAMERAS) if obs == "image" else []
        super().__init__(task=task, instruction=spec.instruction,
                         max_episode_steps=max_episode_steps or spec.max_episode_steps,
                         fps=FPS, cameras=cams, image_size=image_size, render_camera="agentview",
                         render_size=render_size, render_mode=render_mode)
        self.state_names = self.layout.names()
        low, high = self._env.action_spec
        self._init_spaces(self.layout.dim, spaces.Box(low.astype(np.float32),
                                                      high.astype(np.float32), dtype=np.float32))

    @property
    def unwrapped_robosuite(self):
        """The underlying robosuite env."""
        return self._env

    def _sim_model_data(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        return self._env.sim.model._model, self._env.sim.data._data

    def _sim_reset(self, rng: np.random.Generator) -> None:
        # robosuite's placement samplers hold a reference to env.rng: reseed it in place.
        fresh = np.random.default_rng(int(rng.integers(2**63)))
        self._env.rng.bit_generator.state = fresh.bit_generator.state
        self._raw = self._env.reset()

    def _sim_step(self, action: np.ndarray) -> float:
        if self._raw is None:
            raise RuntimeError(f"{self.task_name}: step() called before reset()")
        self._raw, reward, _, _ = self._env.step(action.astype(np.float64))
        return float(reward)

    def _sim_success(self) -> bool:
        return bool(self._env._check_success())

    def _sim_state(self) -> np.ndarray:
        if self._raw is None:
            raise RuntimeError(f"{self.task_name}: observation requested before reset()")
        return np.concatenate([np.asarray(self._raw[k], dtype=np.float32).reshape(-1)
                               for k, _ in self.layout.keys])

    def _sim_close(self) -> None:
        self._env.close()


# --- experts ----------------------------------------------------------------------------------

# Where the expert drops the can: inside the can's quarter of the goal bin (x in 0.1..0.3, y in
# 0.28..0.53, behind 1 cm dividers), pulled toward the robot from the quarter's centre
# (0.1975, 0.4025), which lies at the edge of the Panda's reach. A test checks it against the env.
CAN_GOAL = np.array([0.18, 0.38, 0.8])

_DOWN = np.diag([1.0, -1.0, -1.0])  # gripper pointing straight down, fingers along world y


def _quat_xyzw_to_mat(q: np.ndarray) -> np.ndarray:
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.array([q[3], q[0], q[1], q[2]], dtype=np.float64))
    return mat.reshape(3, 3)


def _yaw(mat: np.ndarray) -> float:
    return float(np.arctan2(mat[1, 0], mat[0, 0]))


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rotation_error(current: np.ndarray, desired: np.ndarray) -> np.ndarray:
    """World-frame axis-angle taking ``current`` to ``desired`` (what OSC's delta expects)."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, (desired @ current.T).reshape(-1))
    vel = np.zeros(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


class PickPlaceExpert:
    """Waypoint expert on OSC_POSE: hover over the object with the gripper square to it, descend,
    close, lift; then (stack / pick-place) carry the object over its goal, lower it and let go.

    Waypoints are followed by saturated P-control on the end-effector position; orientation is held
    pointing down, with yaw matched to the cube's faces (nearest quarter turn). Phases advance when
    the position error is small, so the expert copes with the controller's lag.
    """

    POS_GAIN = 12.0      # action per metre of position error (1.0 = 5 cm step)
    ROT_GAIN = 1.5       # action per radian of orientation error (1.0 = 0.5 rad step)
    HOVER = 0.08         # height above the object before descending
    GRASP_STEPS = 12     # steps with the gripper closing before lifting
    RELEASE_STEPS = 10

    def __init__(self, task: str, goal: np.ndarray | None = None):
        if task not in TASKS:
            raise ValueError(f"unknown robosuite task {task!r}; tasks: {sorted(TASKS)}")
        self.task = task
        self.layout = StateLayout(task)
        self.obj_key = {"lift": "cube", "stack": "cubeA", "pickplacecan": "Can"}[task]
        # Where a pick-place object goes (its centre, resting); stack reads cubeB from the state.
        self.goal = np.asarray(CAN_GOAL if goal is None else goal, dtype=np.float64)
        # Height above the place target to carry at: the can (half height 4 cm) must clear the
        # bins' 10 cm walls, yet stay inside the arm's reach over the far bin.
        self.carry_height = 0.10 if task == "pickplacecan" else 0.06
        # How close the object must get before lowering / letting go: a cube on a cube needs a
        # few mm, a can dropped into its quarter of the bin a few cm (OSC lags under the load).
        self.place_tol = 0.02 if task == "pickplacecan" else 0.008
        self.reset()

    def reset(self) -> None:
        self.phase = "hover"
        self.count = 0
        self.yaw_target: float | None = None

    def _obj(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.layout.get(s, f"{self.obj_key}_pos"), self.layout.get(s, f"{self.obj_key}_quat")

    def _place_target(self, s: np.ndarray) -> np.ndarray:
        """Where the held object's centre should end up."""
        if self.task == "stack":
            # cubeA (half 0.02) resting on cubeB (half 0.025), a few mm of clearance
            return self.layout.get(s, "cubeB_pos") + np.array([0.0, 0.0, 0.02 + 0.025 + 0.006])
        # the can's centre standing on the bin floor (top at z=0.82; half height 4 cm), +1 cm
        return self.goal + np.array([0.0, 0.0, 0.07])

    def _grasp_yaw(self, s: np.ndarray, ori: np.ndarray, obj_quat: np.ndarray) -> float:
        """Gripper yaw for the grasp: square to the cube's faces (a quarter turn of choice), with
        the fingers across, not along, the line to a neighbouring cube (so a finger does not land
        on it), and as little wrist rotation as possible."""
        grip = _yaw(ori)
        if self.task == "pickplacecan":  # a cylinder: any yaw grasps it
            return grip
        obj_yaw = _yaw(_quat_xyzw_to_mat(obj_quat))
        base = grip + (obj_yaw - grip + np.pi / 4) % (np.pi / 2) - np.pi / 4
        avoid = None
        if self.task == "stack":
            d = (self.layout.get(s, "cubeB_pos") - self.layout.get(s, "cubeA_pos"))[:2]
            avoid = d / max(float(np.linalg.norm(d)), 1e-6)

        def cost(yaw: float) -> float:
            fingers = (_rot_z(yaw) @ _DOWN)[:2, 1]  # the axis the fingers close along
            along = 0.0 if avoid is None else abs(float(fingers @ avoid))
            return along + 0.1 * abs(yaw - grip)

        return min((base + k * np.pi / 2 for k in (-1, 0, 1)), key=cost)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        s = np.asarray(obs[STATE_KEY], dtype=np.float64)
        if s.shape != (self.layout.dim,):
            raise ValueError(f"{self.task} expert needs a {self.layout.dim}-d observation.state, "
                             f"got {s.shape}")
        eef = self.layout.get(s, "robot0_eef_pos")
        ori = _quat_xyzw_to_mat(self.layout.get(s, "robot0_eef_quat"))
        obj, obj_quat = self._obj(s)
        if self.yaw_target is None:
            self.yaw_target = self._grasp_yaw(s, ori, obj_quat)
        gripper = -1.0
        target = eef
        if self.phase == "hover":
            target = obj + np.array([0.0, 0.0, self.HOVER])
            if np.linalg.norm((target - eef)[:2]) < 0.01 and abs(target[2] - eef[2]) < 0.02:
                self.phase = "descend"
        if self.phase == "descend":
            target = obj + np.array([0.0, 0.0, -0.005 if self.task != "pickplacecan" else 0.02])
            if np.linalg.norm(target - eef) < 0.012:
                self.phase, self.count = "grasp", 0
        if self.phase == "grasp":
            target, gripper = eef, 1.0
            self.count += 1
            if self.count >= self.GRASP_STEPS:
                self.phase = "lift"
        if self.phase == "lift":
            gripper = 1.0
            if self.task == "lift":
                target = np.array([eef[0], eef[1], 1.0])  # 20 cm above the table top (z=0.8)
            else:
                target = np.array([eef[0], eef[1], self._place_target(s)[2] + self.carry_height])
                if eef[2] > target[2] - 0.02:
                    self.phase = "carry"
        if self.phase == "carry":
            gripper = 1.0
            place = self._place_target(s)
            target = place + np.array([0.0, 0.0, self.carry_height]) + (eef - obj)
            if np.linalg.norm((place - obj)[:2]) < self.place_tol:
                self.phase = "lower"
        if self.phase == "lower":
            gripper = 1.0
            place = self._place_target(s)
            target = place + (eef - obj)
            err = place - obj
            if abs(err[2]) < 0.01 and np.linalg.norm(err[:2]) < 2 * self.place_tol:
                self.phase, self.count = "release", 0
        if self.phase == "release":
            target, gripper = eef, -1.0
            self.count += 1
            if self.count >= self.RELEASE_STEPS:
                self.phase = "retreat"
        if self.phase == "retreat":
            gripper = -1.0
            target = np.array([eef[0], eef[1], obj[2] + 0.15])

        desired = _rot_z(self.yaw_target) @ _DOWN
        action = np.zeros(7)
        action[:3] = np.clip(self.POS_GAIN * (target - eef), -1.0, 1.0)
        action[3:6] = np.clip(self.ROT_GAIN * _rotation_error(ori, desired), -1.0, 1.0)
        action[6] = gripper
        return action.astype(np.float32)




class RobosuiteSuite(Suite):
    """A one-task robosuite suite."""

    def __init__(self, task: str, obs: str = "state", image_size: int = 84,
                 cameras: list[str] | None = None):
        if task not in TASKS:
            raise ValueError(f"unknown robosuite suite 'robosuite/{task}'; tasks: {sorted(TASKS)}")
        cams = list(cameras) if cameras else list(DEFAULT_CAMERAS)
        super().__init__(f"robosuite/{task}", [task], FPS, obs, image_size, cams)

    def instruction(self, task: str) -> str:
        self.check_task(task)
        return TASKS[task].instruction

    def max_episode_steps(self, task: str) -> int:
        self.check_task(task)
        return TASKS[task].max_episode_steps

    def make_env(self, task: str) -> RobosuiteEnv:
        self.check_task(task)
        return RobosuiteEnv(task, obs=self.obs, image_size=self.image_size,
                            cameras=self.cameras or None)

    def make_expert(self, task: str) -> PickPlaceExpert:
        self.check_task(task)
        return PickPlaceExpert(task)


def make_robosuite_suite(rest: str, **kw: Any) -> RobosuiteSuite:
    return RobosuiteSuite(rest, **kw)


def robosuite_suite_names() -> list[str]:
    return [f"robosuite/{t}" for t in TASKS]
