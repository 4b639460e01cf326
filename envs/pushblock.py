"""PushBlock: our own quick-start task. A round pusher moving in the plane pushes a square block
onto a green target disk (scene in ``assets/pushblock.xml``).

State (10 floats, ``STATE_NAMES``): pusher xy, block xy, block yaw as (cos 4y, sin 4y) (a square
looks the same every quarter turn, so this is continuous where the raw angle is not), target xy,
pusher velocity xy. Action (2 floats in [-1, 1]): pusher velocity as a fraction of ``MAX_SPEED``.
Success: the block centre is within ``SUCCESS_RADIUS`` of the target centre.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
from gymnasium import spaces

from envs.base import STATE_KEY, SimEnv, Suite

ASSET = Path(__file__).resolve().parents[1] / "assets" / "pushblock.xml"
TASK = "pushblock"
INSTRUCTION = "push the red block onto the green target"
STATE_NAMES = ["pusher_x", "pusher_y", "block_x", "block_y", "block_cos4yaw", "block_sin4yaw",
               "target_x", "target_y", "pusher_vx", "pusher_vy"]
CAMERAS = ["top", "front"]

FPS = 10.0
SUBSTEPS = 10            # 0.01 s physics steps per 0.1 s control step
MAX_SPEED = 0.15         # m/s at |action| = 1
MAX_EPISODE_STEPS = 150
SUCCESS_RADIUS = 0.05    # block centre on the target disk (radius 0.05)
PUSHER_RADIUS = 0.02
BLOCK_HALF = 0.03

# Initial-state distribution (metres); the minimum gaps keep every episode a real push.
PUSHER_RANGE = 0.25
BLOCK_RANGE = 0.18
# The target sits at the table centre: with a moving target, 50 demonstrations and a few CPU
# minutes are not enough for Diffusion Policy to learn the push (measured: 10% success).
TARGET_RANGE = 0.0
MIN_BLOCK_TARGET = 0.12
MIN_PUSHER_BLOCK = 0.1


def sample_initial_state(rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    """Pusher, block (xy + yaw) and target positions, by rejection sampling from ``rng``."""
    target = rng.uniform(-TARGET_RANGE, TARGET_RANGE, size=2)
    yaw = float(rng.uniform(-np.pi / 4, np.pi / 4))
    while True:
        block = rng.uniform(-BLOCK_RANGE, BLOCK_RANGE, size=2)
        if np.linalg.norm(target - block) >= MIN_BLOCK_TARGET:
            break
    while True:
        pusher = rng.uniform(-PUSHER_RANGE, PUSHER_RANGE, size=2)
        if np.linalg.norm(pusher - block) >= MIN_PUSHER_BLOCK:
            break
    return {"pusher": pusher, "block": block, "yaw": yaw, "target": target}


class PushBlockEnv(SimEnv):
    """The PushBlock gymnasium env (see the module docstring for state, action and success)."""

    def __init__(self, obs: str = "state", image_size: int = 84, cameras: list[str] | None = None,
                 max_episode_steps: int = MAX_EPISODE_STEPS, render_size: int = 256,
                 render_mode: str | None = "rgb_array"):
        if not ASSET.is_file():
            raise FileNotFoundError(f"PushBlock scene not found: {ASSET}")
        self.model = mujoco.MjModel.from_xml_path(str(ASSET))
        self.data = mujoco.MjData(self.model)
        cams = (cameras or ["top"]) if obs == "image" else []
        super().__init__(task=TASK, instruction=INSTRUCTION, max_episode_steps=max_episode_steps,
                         fps=FPS, cameras=cams, image_size=image_size, render_camera="top",
                         render_size=render_size, render_mode=render_mode)
        m = self.model
        self._qadr = {n: m.jnt_qposadr[m.joint(n).id]
                      for n in ("pusher_x", "pusher_y", "block_x", "block_y", "block_yaw")}
        self._vadr = {n: m.jnt_dofadr[m.joint(n).id] for n in ("pusher_x", "pusher_y")}
        self._target_mocap = m.body_mocapid[m.body("target").id]
        self._init_spaces(len(STATE_NAMES),
                          spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32))

    # --- SimEnv hooks --------------------------------------------------------------------------
    def _sim_model_data(self):
        return self.model, self.data

    def _sim_reset(self, rng: np.random.Generator) -> None:
        init = sample_initial_state(rng)
        mujoco.mj_resetData(self.model, self.data)
        q = self.data.qpos
        q[self._qadr["pusher_x"]], q[self._qadr["pusher_y"]] = init["pusher"]
        q[self._qadr["block_x"]], q[self._qadr["block_y"]] = init["block"]
        q[self._qadr["block_yaw"]] = init["yaw"]
        self.data.mocap_pos[self._target_mocap, :2] = init["target"]
        mujoco.mj_forward(self.model, self.data)

    def _sim_step(self, action: np.ndarray) -> float:
        self.data.ctrl[:] = action * MAX_SPEED
        mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)
        return -self._block_to_target()

    def _sim_success(self) -> bool:
        return self._block_to_target() < SUCCESS_RADIUS

    def _sim_state(self) -> np.ndarray:
        q, v, a = self.data.qpos, self.data.qvel, self._qadr
        yaw = q[a["block_yaw"]]
        return np.array([
            q[a["pusher_x"]], q[a["pusher_y"]], q[a["block_x"]], q[a["block_y"]],
            np.cos(4 * yaw), np.sin(4 * yaw),
            *self.data.mocap_pos[self._target_mocap, :2],
            v[self._vadr["pusher_x"]], v[self._vadr["pusher_y"]],
        ], dtype=np.float32)

    def _sim_perturb(self, rng: np.random.Generator, distance: float) -> None:
        """Slide the block by ``distance`` in a direction drawn from ``rng``, skipping directions
        (the next of 16 around the drawn one) that leave the table, hit the pusher, or drop the
        block on the target (a free success)."""
        q, a = self.data.qpos, self._qadr
        block = np.array([q[a["block_x"]], q[a["block_y"]]])
        pusher = np.array([q[a["pusher_x"]], q[a["pusher_y"]]])
        target = self.data.mocap_pos[self._target_mocap, :2]
        limit = PUSHER_RANGE + PUSHER_RADIUS - BLOCK_HALF   # the block stays where the pusher reaches
        start = float(rng.uniform(0.0, 2 * np.pi))
        new = None
        for k in (0, *[k * sgn for k in range(1, 9) for sgn in (1, -1)][:15]):
            ang = start + k * 2 * np.pi / 16
            xy = block + distance * np.array([np.cos(ang), np.sin(ang)])
            if (np.all(np.abs(xy) <= limit) and np.linalg.norm(xy - pusher) > self._CLEARANCE
                    and np.linalg.norm(xy - target) >= SUCCESS_RADIUS):
                new = xy
                break
        if new is None:  # boxed in: move toward the table centre instead
            new = block - distance * block / max(float(np.linalg.norm(block)), 1e-9)
        q[a["block_x"]], q[a["block_y"]] = new
        self.data.qvel[self.model.jnt_dofadr[self.model.joint("block_x").id]] = 0.0
        self.data.qvel[self.model.jnt_dofadr[self.model.joint("block_y").id]] = 0.0
        mujoco.mj_forward(self.model, self.data)

    _CLEARANCE = BLOCK_HALF * np.sqrt(2) + PUSHER_RADIUS + 0.005  # block corner clear of the pusher

    def _block_to_target(self) -> float:
        q, a = self.data.qpos, self._qadr
        block = np.array([q[a["block_x"]], q[a["block_y"]]])
        return float(np.linalg.norm(block - self.data.mocap_pos[self._target_mocap, :2]))


class PushBlockExpert:
    """Go behind the block (the side away from the target), then push it along the block->target
    line, steering sideways to keep the contact on that line. Stops once the block is on target.

    Reads only ``observation.state``; smooth because every command is a saturated P-control toward
    a waypoint, and the push/approach switch has hysteresis.
    """

    CONTACT = BLOCK_HALF + PUSHER_RADIUS   # centre distance at face contact
    CLEAR = CONTACT + 0.035                # lateral clearance when going around the block
    STAGE = CONTACT + 0.02                 # staging distance behind the block
    GAIN = 12.0                            # (m/s)/m: P gain toward waypoints, saturated at MAX_SPEED

    def __init__(self) -> None:
        self.pushing = False

    def reset(self) -> None:
        self.pushing = False

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        s = np.asarray(obs[STATE_KEY], dtype=np.float64)
        pusher, block, target = s[0:2], s[2:4], s[6:8]
        to_target = target - block
        dist = float(np.linalg.norm(to_target))
        if dist < 0.5 * SUCCESS_RADIUS:
            self.pushing = False
            return np.zeros(2, dtype=np.float32)
        u = to_target / dist                      # push direction
        n = np.array([-u[1], u[0]])               # its left normal
        rel = pusher - block
        along, lat = float(rel @ u), float(rel @ n)

        # Pushing: pusher behind the block and close to the line through it (with hysteresis).
        lat_tol = 0.02 if self.pushing else 0.01
        self.pushing = along < -self.CONTACT + 0.015 and abs(lat) < lat_tol
        if self.pushing:
            speed = min(MAX_SPEED, 0.05 + 1.5 * dist)          # slow down near the target
            velocity = speed * u - self.GAIN * lat * n          # move on, and re-centre the contact
            return self._to_action(velocity)

        side = 1.0 if lat >= 0 else -1.0
        if along > -self.CONTACT and abs(lat) < self.CLEAR:
            waypoint = block + n * side * self.CLEAR * 1.2 + u * along    # step out sideways
        elif along > -self.STAGE:
            waypoint = block + n * side * self.CLEAR * 1.2 - u * self.STAGE * 1.2  # round the corner
        else:
            waypoint = block - u * self.STAGE                            # line up behind it
        return self._to_action(self.GAIN * (waypoint - pusher))

    @staticmethod
    def _to_action(velocity: np.ndarray) -> np.ndarray:
        speed = float(np.linalg.norm(velocity))
        if speed > MAX_SPEED:
            velocity = velocity * (MAX_SPEED / speed)
        return np.clip(velocity / MAX_SPEED, -1.0, 1.0).astype(np.float32)


class PushBlockSuite(Suite):
    """The one-task suite ``pushblock``."""

    def __init__(self, obs: str = "state", image_size: int = 84, cameras: list[str] | None = None):
        cams = list(cameras) if cameras else ["top"]
        unknown = [c for c in cams if c not in CAMERAS]
        if unknown:
            raise ValueError(f"pushblock: unknown cameras {unknown}; available: {CAMERAS}")
        super().__init__(TASK, [TASK], FPS, obs, image_size, cams)

    def instruction(self, task: str) -> str:
        self.check_task(task)
        return INSTRUCTION

    def max_episode_steps(self, task: str) -> int:
        self.check_task(task)
        return MAX_EPISODE_STEPS

    def make_env(self, task: str = TASK) -> PushBlockEnv:
        self.check_task(task)
        return PushBlockEnv(obs=self.obs, image_size=self.image_size, cameras=self.cameras or None)

    def make_expert(self, task: str = TASK) -> PushBlockExpert:
        self.check_task(task)
        return PushBlockExpert()
