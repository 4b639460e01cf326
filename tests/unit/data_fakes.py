"""Small stand-ins for the data tests: known-value episodes for the writer, and a fake task suite
(with the envs API) for the recorder that runs in microseconds and fails on known trials."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
from gymnasium import spaces

FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
    "action": {"dtype": "float32", "shape": [2], "names": None},
    "observation.images.top": {
        "dtype": "video",
        "shape": [16, 16, 3],
        "names": ["height", "width", "channels"],
    },
}


def frame(ep: int, k: int, with_image: bool = True) -> dict:
    """Frame k of episode ep: values encode (ep, k) so tests can check them exactly."""
    out = {
        "observation.state": np.array([ep * 100 + k, -k, 0.5], dtype=np.float32),
        "action": np.array([ep, k], dtype=np.float32),
    }
    if with_image:
        out["observation.images.top"] = np.full((16, 16, 3), (ep * 40 + k * 7) % 256, dtype=np.uint8)
    return out


def write_episodes(writer, eps, length=12, with_image=True) -> None:
    for ep in eps:
        for k in range(length):
            writer.add_frame(frame(ep, k, with_image), task=f"task {ep % 2}")
        writer.save_episode()


# ---------------------------------------------------------------------------------------- fake suite
class FakeEnv(gym.Env):
    """A point that the expert drives to 1.0; trials whose seed % 3 == 2 get a broken expert."""

    def __init__(self, task: str, obs: str, image_size: int):
        self.task = task
        self.cameras = ["cam"] if obs == "image" else []
        self.image_size = image_size
        sp = {"observation.state": spaces.Box(-np.inf, np.inf, (2,), np.float32)}
        for c in self.cameras:
            sp[f"observation.images.{c}"] = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.observation_space = spaces.Dict(sp)
        self.action_space = spaces.Box(-1, 1, (1,), np.float32)
        self.seed_value = 0
        self.x = 0.0
        self.t = 0

    def _obs(self):
        out = {"observation.state": np.array([self.x, self.seed_value % 1000], dtype=np.float32)}
        for c in self.cameras:
            out[f"observation.images.{c}"] = np.full(
                (self.image_size,) * 2 + (3,), int(self.x * 200) % 256, np.uint8
            )
        return out

    def reset(self, *, seed=None, options=None):
        crash = os.environ.get("FAKE_SUITE_CRASH_SEED")
        if crash is not None and int(crash) == seed:
            raise KeyboardInterrupt(f"fake crash at seed {seed}")
        self.seed_value = int(seed)
        self.x = (seed % 5) * 0.1
        self.t = 0
        return self._obs(), {"success": False}

    def step(self, action):
        self.x += 0.25 * float(np.clip(action[0], -1, 1))
        self.t += 1
        return self._obs(), 0.0, False, self.t >= 30, {"success": self.x >= 1.0}


class FakeExpert:
    def __init__(self, env: FakeEnv):
        self.env = env

    def reset(self):
        pass

    def act(self, obs):
        broken = self.env.seed_value % 3 == 2 or self.env.task == "never"
        return np.array([0.0 if broken else 1.0], dtype=np.float32)


class FakeSuite:
    fps = 10.0

    def __init__(self, name: str, obs: str = "state", image_size: int = 8):
        kind = name.split("/", 1)[1] if "/" in name else "one"
        self.name = name
        self.tasks = {"one": ["reach"], "multi": ["reach", "push"], "never": ["never"]}[kind]
        self.obs, self.image_size = obs, image_size
        self.cameras = ["cam"] if obs == "image" else []

    def instruction(self, task):
        return f"do {task}"

    def max_episode_steps(self, task):
        return 30

    def trial_seed(self, task, trial, split):
        return {"train": 0, "eval": 100_000}[split] + self.tasks.index(task) * 1000 + trial

    def make_env(self, task):
        return FakeEnv(task, self.obs, self.image_size)

    def make_expert(self, task):
        raise RuntimeError("use make_expert_for(env)")


def make_fake_suite(name: str, obs: str = "state", image_size: int = 8) -> FakeSuite:
    suite = FakeSuite(name, obs, image_size)
    envs = {}

    def make_env(task):
        envs[task] = FakeEnv(task, obs, image_size)
        return envs[task]

    suite.make_env = make_env
    suite.make_expert = lambda task: FakeExpert(envs[task])
    return suite
