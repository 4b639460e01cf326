"""Helpers of the deploy tests and benchmarks: untrained Diffusion Policies and checkpoints sized
for a suite (real network compute per chunk, so timing is meaningful; meaningless actions), a robot
wrapper whose observations freeze, fuzzed server requests, a policy server in a child process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _unit_stats(dim: int, low: Any = -1.0, high: Any = 1.0) -> dict[str, list[float]]:
    lo = np.broadcast_to(np.asarray(low, dtype=np.float64), (dim,))
    hi = np.broadcast_to(np.asarray(high, dtype=np.float64), (dim,))
    return {"min": lo.tolist(), "max": hi.tolist(), "mean": ((lo + hi) / 2).tolist(),
            "std": ((hi - lo) / 4).tolist(), "q01": lo.tolist(), "q99": hi.tolist(), "count": [1]}


def untrained_state_policy(suite: Any, tiny: bool = True, n_action_steps: int | None = None):
    """A Diffusion Policy for ``suite``'s state observations (``DiffusionConfig.tiny()`` or the
    default size), with stats spanning [-1, 1] for the state and the action space's bounds."""
    from robopolicy.policies.diffusion.config import DiffusionConfig
    from robopolicy.policies.diffusion.model import DiffusionPolicy
    from robopolicy.types import STATE_KEY, FeatureSpec

    env = suite.make_env(suite.tasks[0])
    try:
        state_dim = int(env.observation_space[STATE_KEY].shape[0])
        a_low, a_high = env.action_space.low, env.action_space.high
    finally:
        env.close()
    config = DiffusionConfig.tiny() if tiny else DiffusionConfig()
    if n_action_steps is not None:
        config.n_action_steps = int(n_action_steps)
        config.__post_init__()
    features = FeatureSpec(action_dim=int(a_low.shape[0]), state_dim=state_dim, fps=float(suite.fps))
    stats = {STATE_KEY: _unit_stats(state_dim), "action": _unit_stats(int(a_low.shape[0]), a_low, a_high)}
    return DiffusionPolicy(config, features, stats).eval()


def save_untrained_checkpoint(run_dir: str | Path, env: str = "pushblock", tiny: bool = True) -> Path:
    """An untrained state Diffusion Policy for suite ``env`` saved as a checkpoint whose
    config.yaml names the env (what ``robopolicy-deploy``/``robopolicy-serve`` read)."""
    from envs import make_suite

    from robopolicy.train.checkpoint import save_checkpoint

    policy = untrained_state_policy(make_suite(env, obs="state"), tiny=tiny)
    return save_checkpoint(run_dir, 0, policy, ema_state=None, train_state=None,
                           train_config={"env": env, "obs": "state"})


class FrozenObservations:
    """Wraps a robot so its observation stream freezes after ``freeze_after`` commands (a camera
    or state driver that hangs): ``observe`` keeps returning the last frame with its old timestamp.
    The watchdog must then hold the robot and stop the run."""

    def __init__(self, robot: Any, freeze_after: int):
        self.robot, self.freeze_after = robot, int(freeze_after)
        self.applied: list[np.ndarray] = []
        self.frozen_at: float | None = None
        """Loop-clock time of the last fresh frame (None until the stream froze)."""
        self._frozen: Any = None
        for attr in ("action_low", "action_high", "hold_keep_dims", "instruction"):
            setattr(self, attr, getattr(robot, attr, None if attr == "instruction" else ()))

    def reset(self, seed: int | None = None) -> Any:
        self.applied, self._frozen, self.frozen_at = [], None, None
        return self.robot.reset(seed)

    def observe(self) -> Any:
        if self._frozen is not None:
            return self._frozen
        obs = self.robot.observe()
        if len(self.applied) >= self.freeze_after:
            self._frozen, self.frozen_at = obs, obs.timestamp
        return obs

    def apply(self, action: np.ndarray) -> None:
        self.applied.append(np.asarray(action).copy())
        self.robot.apply(action)

    def close(self) -> None:
        self.robot.close()


def malformed_messages(rng: np.random.Generator, obs_key: str, window_shape: tuple[int, ...],
                       max_message_bytes: int):
    """An endless stream of malformed policy-server requests, each with the error code the server
    must answer (None: any protocol error; random bytes may decode as anything but a valid request).
    ``obs_key``/``window_shape``: the served policy's state key and its valid ``(1, T, S)`` window."""
    import msgpack

    from robopolicy.deploy.protocol import NDARRAY_EXT, pack

    good = {obs_key: np.zeros(window_shape, np.float32)}
    truncated = pack({"type": "infer", "obs": good})
    n_bytes = int(np.prod(window_shape)) * 4

    def ext(dtype: str, shape: list[int], raw: bytes) -> msgpack.ExtType:
        return msgpack.ExtType(NDARRAY_EXT, msgpack.packb([dtype, shape, raw]))

    def random_shape() -> tuple[int, ...]:
        shape = tuple(int(d) for d in rng.integers(1, 5, size=int(rng.integers(1, 4))))
        return shape if shape != tuple(window_shape) else (*shape[:-1], shape[-1] + 1)

    def raw(msg: dict) -> bytes:
        return msgpack.packb({"v": 1, **msg})

    makers = [
        lambda: (rng.bytes(int(rng.integers(0, 200))), None),
        lambda: (truncated[: int(rng.integers(1, len(truncated)))], None),
        lambda: ("a text frame, not binary", "bad_message"),
        lambda: (msgpack.packb([1, "x", 2.5, None][: int(rng.integers(0, 5))]), "bad_message"),
        lambda: (msgpack.packb({"type": "infer", "obs": {}}), "version"),
        lambda: (msgpack.packb({"v": int(rng.integers(2, 99)), "type": "infer"}), "version"),
        lambda: (raw({"type": int(rng.integers(100))}), "bad_message"),
        lambda: (pack({"type": f"t{int(rng.integers(10**6))}"}), "unknown_type"),
        lambda: (pack({"type": "infer"}), "wrong_shape"),
        lambda: (pack({"type": "infer", "obs": "x"}), "wrong_shape"),
        lambda: (pack({"type": "infer", "obs": {"other": np.zeros(3)}}), "wrong_shape"),
        lambda: (pack({"type": "infer", "obs": {obs_key: rng.normal(size=random_shape())}}), "wrong_shape"),
        lambda: (pack({"type": "infer", "obs": {obs_key: np.full(window_shape, np.inf)}}), "wrong_shape"),
        lambda: (raw({"type": "infer", "obs": {obs_key: np.zeros(window_shape).tolist()}}), "wrong_shape"),
        lambda: (pack({"type": "infer", "obs": good, "task": int(rng.integers(9))}), "wrong_shape"),
        lambda: (pack({"type": "infer", "obs": good, "t_obs": "now"}), "bad_message"),
        lambda: (pack({"type": "infer", "obs": good, "id": "abc"}), "bad_message"),
        lambda: (pack({"type": "reset", "n_envs": int(rng.integers(-5, 1))}), "bad_message"),
        lambda: (pack({"type": "reset", "n_envs": 10**6}), "bad_message"),
        lambda: (raw({"type": "infer", "obs": {obs_key: ext("|O", list(window_shape), b"\0" * n_bytes)}}), "bad_message"),
        lambda: (raw({"type": "infer", "obs": {obs_key: ext("<f4", list(window_shape), b"\0" * (n_bytes - 1))}}),
                 "bad_message"),
        lambda: (raw({"type": "infer", "obs": {obs_key: ext("<f4", [-1], b"")}}), "bad_message"),
        lambda: (raw({"type": "infer", "x": msgpack.ExtType(9, b"")}), "bad_message"),
        lambda: (pack({"type": "infer", "obs": good, "pad": b"\0" * (max_message_bytes + 1)}), "oversized"),
    ]
    while True:
        yield makers[int(rng.integers(len(makers)))]()


def free_port() -> int:
    """A TCP port that was free a moment ago (for a server started right after)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server_process(checkpoint: str | Path, port: int, log_path: str | Path, timeout_s: float = 120.0,
                         extra_args: tuple[str, ...] = ()):
    """``robopolicy-serve`` in a child process (output appended to ``log_path``); returns the
    ``Popen`` once ``/healthz`` answers."""
    import json
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    log_path = Path(log_path)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "robopolicy.cli.serve", f"checkpoint={checkpoint}", f"port={port}", *extra_args]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=log_path.parent)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if json.loads(r.read())["ok"]:
                    return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"robopolicy-serve exited with {proc.returncode}: "
                                   f"{log_path.read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.1)
    proc.kill()
    raise TimeoutError(f"robopolicy-serve did not answer /healthz within {timeout_s} s (log: {log_path})")


def load_note() -> str:
    """A line for benchmark tables: timing on a shared machine depends on what else runs."""
    import os

    return f"\nLoad average (1 min) at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n"
