"""Play data for world models: noisy-expert rollouts that keep their failures and their rewards.

A world model that only ever saw demonstrations cannot imagine a failure, so its data are the
suite's scripted expert with Gaussian action noise at several levels (trial ``i`` uses
``noise_levels[i % len(noise_levels)]``) and, in the noisy trials, segments of uniform random
actions. Every episode is kept (``keep_failed``), and each frame stores lerobot's reward fields:
``next.reward`` (float32, the simulator's dense reward for the step taken at this frame),
``next.success`` (bool, ``info["success"]`` after it) and ``next.done`` (bool, True on the
episode's last frame, as lerobot records it). Recording goes through the shared recorder
(``robopolicy.data.record.record_dataset``: worker processes, resume, LeRobotDataset v3.0).

Kept free of torch imports: it runs in the recorder's worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robopolicy.data.rollout import DONE_KEY, REWARD_KEY, SUCCESS_KEY, EpisodeResult, RolloutSpec, run_episode

__all__ = ["DONE_KEY", "REWARD_KEY", "SUCCESS_KEY", "PlaySpec", "record_play_dataset", "run_play_episode"]
_NOISE_STREAM = 0x9A7  # separates the play noise from the env's reset stream


@dataclass(frozen=True)
class PlaySpec(RolloutSpec):
    """A recorder rollout spec plus how the expert's actions are perturbed (picklable)."""

    noise_levels: tuple[float, ...] = (0.0, 0.1, 0.3, 0.6)
    """Std of the Gaussian noise added to the expert's actions, cycled over trials."""
    random_segment_prob: float = 0.02
    """Per-step chance (trials with noise > 0) that a segment of uniform random actions starts."""
    random_segment_steps: tuple[int, int] = (5, 30)
    """Shortest and longest random-action segment, in steps."""
    policy: str | None = None
    """A policy checkpoint (run or step folder) whose rollouts replace the expert's (the same noise
    scheme on its actions): play data in the states a trained policy visits, failures included."""

    def __post_init__(self) -> None:
        if not self.noise_levels or any(not s >= 0 for s in self.noise_levels):
            raise ValueError(f"PlaySpec: noise_levels must be a non-empty list of stds >= 0, got {self.noise_levels}")
        if not 0 <= self.random_segment_prob <= 1:
            raise ValueError(f"PlaySpec: random_segment_prob must lie in [0, 1], got {self.random_segment_prob}")
        lo, hi = self.random_segment_steps
        if not 1 <= lo <= hi:
            raise ValueError(f"PlaySpec: random_segment_steps must be (min, max) with 1 <= min <= max, got {(lo, hi)}")

    def noise_std(self, trial: int) -> float:
        return float(self.noise_levels[trial % len(self.noise_levels)])


def run_play_episode(spec: PlaySpec, task: str, trial: int) -> EpisodeResult:
    """One noisy-expert episode from trial ``trial``'s initial state, with reward fields per frame:
    the shared recorder rollout (``robopolicy.data.rollout.run_episode``) with the action noise
    below. The expert is queried at every step, also inside random segments, so an expert that
    keeps a phase still follows the episode."""
    std = spec.noise_std(trial)

    def perturb(env, seed: int):
        rng = np.random.default_rng([seed, _NOISE_STREAM])
        low, high = env.action_space.low, env.action_space.high
        random_left = 0

        def act(action: np.ndarray) -> np.ndarray:
            nonlocal random_left
            if std == 0:
                return action
            if random_left == 0 and rng.random() < spec.random_segment_prob:
                random_left = int(rng.integers(spec.random_segment_steps[0], spec.random_segment_steps[1] + 1))
            if random_left > 0:
                action = rng.uniform(low, high).astype(np.float32)
                random_left -= 1
            else:
                action = action + rng.normal(0.0, std, action.shape).astype(np.float32)
            return np.clip(action, low, high).astype(np.float32)

        return act

    return run_episode(spec, task, trial, perturb=perturb, rewards=True,
                       actor=_policy_actor(spec.policy) if spec.policy else None)


def _policy_actor(checkpoint: str):
    """Builds the policy that acts instead of the expert (torch is imported only here)."""

    def build(suite, task: str):
        from robopolicy.deploy.action_source import PolicyExpert
        from robopolicy.train.checkpoint import load_policy

        return PolicyExpert(load_policy(checkpoint, device="cpu"), suite.instruction(task))

    return build


def record_play_dataset(
    suite_name: str,
    output: str | Path,
    episodes: int,
    *,
    obs: str = "state",
    image_size: int = 84,
    seed_split: str = "train",
    noise_levels: tuple[float, ...] = (0.0, 0.1, 0.3, 0.6),
    random_segment_prob: float = 0.02,
    random_segment_steps: tuple[int, int] = (5, 30),
    post_success_steps: int = 20,
    num_workers: int = 2,
    progress: bool = True,
    suite_factory: str = "envs:make_suite",
    policy: str | None = None,
):
    """Record ``episodes`` play episodes per task (trials 0..episodes-1 of ``seed_split``, every
    one kept) into ``output``; re-running continues an interrupted recording. ``policy``: a policy
    checkpoint that acts instead of the scripted expert. Returns the recorder's ``RecordSummary``."""
    from robopolicy.data.record import record_dataset

    spec = PlaySpec(suite_name, obs, int(image_size), seed_split, True, int(post_success_steps), suite_factory,
                    tuple(float(s) for s in noise_levels), float(random_segment_prob),
                    (int(random_segment_steps[0]), int(random_segment_steps[1])),
                    None if policy is None else str(policy))
    return record_dataset(suite_name, output, episodes, obs=obs, image_size=image_size, keep_failed=True,
                          num_workers=num_workers, seed_split=seed_split, progress=progress,
                          stop_on_success=True, post_success_steps=int(post_success_steps),
                          suite_factory=suite_factory, spec=spec, episode_fn=run_play_episode)
