"""Where action chunks come from: a local policy (``PolicySource``) or a remote policy server
(``robopolicy.deploy.client.PolicyClient``).

The evaluator and the robot control loop both talk to an ``ActionSource`` and a
``ChunkScheduler`` (deploy/scheduler.py), so what is measured in simulation is what runs on the
robot. A source turns *raw* environment observations (uint8 HxWx3 images, float state) into a
timestamped ``Chunk`` of raw-unit actions; it owns the observation history and the policy state.

Each control step the caller hands the new observation to exactly one of ``infer`` (when the
scheduler wants a chunk) or ``observe`` (otherwise), so the history always holds consecutive
control steps whatever the chunk schedule.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from robopolicy.deploy.chunk import Chunk
from robopolicy.deploy.noise import NoiseStreams
from robopolicy.deploy.obs_spec import ObsSpec
from robopolicy.history import ObsHistory
from robopolicy.types import IMAGE_PREFIX, TASK_KEY, PolicyState

__all__ = ["ActionSource", "Chunk", "PolicyExpert", "PolicySource"]


@runtime_checkable
class ActionSource(Protocol):
    """Anything that turns raw observations into action chunks (local policy, remote client)."""

    def infer(self, raw_obs: dict[str, np.ndarray], task: list[str] | str | None = None,
              t_obs: float | None = None) -> Chunk:
        """Record ``raw_obs`` as the newest frame and return a chunk computed from the history.
        ``t_obs`` is the observation's timestamp (default: ``time.monotonic()`` now)."""
        ...

    def observe(self, raw_obs: dict[str, np.ndarray]) -> None:
        """Record ``raw_obs`` as the newest frame without inferring (a step between chunks)."""
        ...

    def reset(self) -> None:
        """Forget the episode: observation history and policy state."""
        ...


class PolicySource:
    """Runs a ``Policy`` in this process: history stacking, observation conversion, timing.

    Raw observations are either batched (leading env dim of size ``n_envs``) or single frames
    (a robot); a chunk is always batched ``(B, n, A)``. Only the keys the policy was built for
    (``policy.features``) are used, so an env may return more.
    """

    def __init__(self, policy: torch.nn.Module, device: str | torch.device | None = None, n_envs: int = 1,
                 dt: float | None = None):
        """``device`` None keeps the policy where it is; ``dt`` None is ``1 / policy.features.fps``."""
        if n_envs < 1:
            raise ValueError(f"PolicySource: n_envs must be >= 1, got {n_envs}")
        for attr in ("act", "init_state", "config", "features"):
            if not hasattr(policy, attr):
                raise TypeError(f"PolicySource needs a robopolicy Policy (with .{attr}), got {type(policy).__name__}")
        self.policy = policy
        if device is not None:
            policy.to(device)
        self.device = self._policy_device(policy) if device is None else torch.device(device)
        policy.eval()  # dropout/batch-norm in inference mode: the source only ever samples
        self.n_envs = int(n_envs)
        feats = policy.features
        self.dt = float(dt) if dt is not None else 1.0 / float(feats.fps)
        if not self.dt > 0:
            raise ValueError(f"PolicySource: control period must be > 0, got {self.dt}")
        try:
            self.spec = ObsSpec.from_features(feats, int(policy.config.n_obs_steps))
        except ValueError as e:
            raise ValueError(f"PolicySource: {e}") from None
        self.keys = self.spec.keys  # raw key -> expected single-frame shape
        self.use_language = self.spec.use_language
        self.history = ObsHistory(int(policy.config.n_obs_steps), batched=True)
        self.state: PolicyState | None = None
        """The batch's policy state (None with per-env noise streams: see ``states``)."""
        self.states: list[PolicyState] | None = None
        """Per-env policy states while ``reset(noise_seeds)`` streams are in use."""
        self.noise: NoiseStreams | None = None
        self.latencies: list[float] = []
        """Seconds of every ``infer`` call since construction (the evaluator reports their stats)."""

    # --- ActionSource ---------------------------------------------------------------------------
    def reset(self, noise_seeds: Sequence[int] | None = None) -> None:
        """Forget the episode. ``noise_seeds`` (one per env, e.g. ``episode_noise_seed``): every
        env's sampling noise comes from its own RNG stream and the policy is called once per env,
        so an env's actions do not depend on the rest of the batch (nor on the batch size: a
        one-env run with the same seed gives the same actions). None: one batched call per chunk
        drawing from torch's global RNG."""
        self.history.reset()
        if noise_seeds is None:
            self.noise, self.states = None, None
            self.state = self.policy.init_state(self.n_envs)
            return
        if len(noise_seeds) != self.n_envs:
            raise ValueError(f"PolicySource.reset: {len(noise_seeds)} noise seeds for {self.n_envs} envs")
        self.noise = NoiseStreams(noise_seeds, self.device)
        self.states = [self.policy.init_state(1) for _ in range(self.n_envs)]
        self.state = None

    def observe(self, raw_obs: dict[str, np.ndarray]) -> None:
        self.history.push(self._select(raw_obs))

    def infer(self, raw_obs: dict[str, np.ndarray], task: list[str] | str | None = None,
              t_obs: float | None = None) -> Chunk:
        t_obs = time.monotonic() if t_obs is None else float(t_obs)
        start = time.perf_counter()
        self.observe(raw_obs)
        return self._infer_stacked(self.history.stacked(), task, t_obs, start)

    def infer_window(self, window: dict[str, np.ndarray], task: list[str] | str | None = None,
                     t_obs: float | None = None) -> Chunk:
        """Infer from an already stacked window ``key -> (n_envs, n_obs_steps, *frame)`` (checked
        with ``ObsSpec.check_window``), leaving the history alone: for callers that stack frames
        themselves, such as the policy server whose clients keep the history on the robot."""
        t_obs = time.monotonic() if t_obs is None else float(t_obs)
        start = time.perf_counter()
        return self._infer_stacked(self.spec.check_window(window, self.n_envs), task, t_obs, start)

    def _infer_stacked(self, stacked: dict[str, np.ndarray], task: list[str] | str | None, t_obs: float,
                       start: float) -> Chunk:
        obs = self._to_policy_obs(stacked, task)
        if self.noise is not None:
            actions, info = self._act_per_env(obs)
        else:
            if self.state is None:
                self.state = self.policy.init_state(self.n_envs)
            with torch.inference_mode():
                actions, self.state = self.policy.act(obs, self.state)
                actions = actions.detach().to("cpu", torch.float32).numpy()
            info = dict(self.state.info) if self.state is not None else {}
        latency = time.perf_counter() - start
        self.latencies.append(latency)
        a_dim = int(self.policy.features.action_dim)
        if actions.ndim != 3 or actions.shape[0] != self.n_envs or actions.shape[2] != a_dim:
            raise ValueError(f"{type(self.policy).__name__}.act returned actions of shape {actions.shape}, "
                             f"expected ({self.n_envs}, n_action_steps, {a_dim})")
        return Chunk(actions=actions, t_obs=t_obs, dt=self.dt, latency_s=latency, info=info)

    def _act_per_env(self, obs: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """One policy call per env, each on its own noise stream and state (see ``reset``)."""
        assert self.noise is not None and self.states is not None
        chunks, infos = [], []
        for i in range(self.n_envs):
            one = {k: v[i:i + 1] for k, v in obs.items()}  # tensors and the task list alike
            with self.noise.use(i), torch.inference_mode():
                actions, self.states[i] = self.policy.act(one, self.states[i])
                chunks.append(actions.detach().to("cpu", torch.float32).numpy())
            infos.append(dict(self.states[i].info))
        return np.concatenate(chunks, axis=0), _merge_infos(infos)

    # --- conversions ----------------------------------------------------------------------------
    def _select(self, raw_obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The policy's keys of one raw observation, with a leading env dim, checked."""
        return self.spec.select(raw_obs, self.n_envs)

    def _to_policy_obs(self, stacked: dict[str, np.ndarray], task: list[str] | str | None) -> dict[str, Any]:
        obs: dict[str, Any] = {}
        for key, v in stacked.items():
            t = torch.from_numpy(v).to(self.device)
            if key.startswith(IMAGE_PREFIX):
                # (B, T, H, W, C) uint8 -> (B, T, C, H, W) float in [0, 1], as the datasets store them
                obs[key] = t.permute(0, 1, 4, 2, 3).float().div_(255.0)
            else:
                obs[key] = t.float()
        if task is not None:
            tasks = [task] * self.n_envs if isinstance(task, str) else list(task)
            if len(tasks) != self.n_envs:
                raise ValueError(f"PolicySource: got {len(tasks)} task strings for {self.n_envs} envs")
            obs[TASK_KEY] = tasks
        elif self.use_language:
            raise ValueError("PolicySource: the policy is language-conditioned; pass task=<instruction>")
        return obs

    @staticmethod
    def _policy_device(policy: torch.nn.Module) -> torch.device:
        for p in policy.parameters():
            return p.device
        for b in policy.buffers():
            return b.device
        return torch.device("cpu")


class PolicyExpert:
    """A policy behind the scripted experts' interface (``reset`` / ``act`` on one unbatched
    observation), so the recorder can roll it out like an expert (e.g. world-model play data from
    trained policies). Chunks come from a one-env ``PolicySource``; the actions of a chunk are
    executed in order and the history sees every step, as in the evaluator's sync schedule."""

    def __init__(self, policy: torch.nn.Module, instruction: str | None = None):
        self.source = PolicySource(policy, n_envs=1)
        self.instruction = instruction if self.source.use_language else None
        self.queue: list[np.ndarray] = []

    def reset(self, noise_seed: int | None = None) -> None:
        """A new episode; ``noise_seed`` gives its sampling noise its own stream (reproducible)."""
        self.source.reset(None if noise_seed is None else [int(noise_seed)])
        self.queue = []

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        batched = {k: np.asarray(v)[None] for k, v in obs.items()}
        if self.queue:
            self.source.observe(batched)
        else:
            chunk = self.source.infer(batched, task=self.instruction, t_obs=0.0)
            self.queue = list(chunk.actions[0])
        return np.asarray(self.queue.pop(0), dtype=np.float32)


def _merge_infos(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-env ``state.info`` dicts of one-env calls -> one batch info: one-row tensors and arrays
    concatenate, numbers that agree stay scalars (others become a per-env array), anything else
    becomes a per-env list."""
    merged: dict[str, Any] = {}
    for key in infos[0]:
        vals = [info.get(key) for info in infos]
        if all(torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == 1 for v in vals):
            merged[key] = torch.cat(vals, dim=0)
        elif all(isinstance(v, np.ndarray) and v.ndim > 0 and v.shape[0] == 1 for v in vals):
            merged[key] = np.concatenate(vals, axis=0)
        elif all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in vals):
            merged[key] = vals[0] if all(v == vals[0] for v in vals) else np.asarray(vals)
        else:
            merged[key] = vals
    return merged
