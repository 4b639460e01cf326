"""The typed configuration of ``robopolicy-refine`` (Hydra schema ``refine_schema``; configs/refine.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import MISSING

from robopolicy.config_utils import check_device

METHODS = ("awr", "filtered", "dppo")


@dataclass
class DPPOConfig:
    """DPPO (method=dppo, Diffusion Policy): PPO over the last denoising steps of the sampling chain."""

    k_steps: int = 4
    """How many of the last DDIM steps are stochastic policy steps (the earlier ones stay deterministic)."""
    min_std: float = 0.1
    """Std (normalized action units) of the Gaussian of each stochastic denoising step: exploration."""
    clip_eps: float = 0.2
    """PPO ratio clip."""
    epochs: int = 4
    """Passes over the collected denoising steps per iteration."""
    minibatch: int = 256
    """Denoising steps per PPO minibatch."""
    max_grad_norm: float = 1.0
    """Max gradient norm of each PPO update."""

    def __post_init__(self) -> None:
        bad = [f"{n}={getattr(self, n)!r}" for n, ok in (
            ("k_steps", self.k_steps >= 1), ("min_std", self.min_std > 0), ("clip_eps", self.clip_eps > 0),
            ("epochs", self.epochs >= 1), ("minibatch", self.minibatch >= 1),
            ("max_grad_norm", self.max_grad_norm > 0)) if not ok]
        if bad:
            raise ValueError(f"refine.dppo: invalid {', '.join(bad)}")


@dataclass
class RefineConfig:
    """Refine an imitation policy by RL inside a world model; the result is a new policy checkpoint."""

    checkpoint: str = MISSING
    """The imitation policy: a run folder (its newest step) or a step_<N> folder. It is only read, never written."""
    world_model: str = MISSING
    """A world-model checkpoint (robopolicy-train-wm) of the same suite: where the episodes are imagined."""
    method: str = "awr"
    """awr (advantage-weighted behaviour cloning, any family) | filtered (behaviour cloning on the imagined successes, any family) | dppo (PPO over the last denoising steps, Diffusion Policy)."""
    env: Optional[str] = None
    """Suite (default: the one the checkpoint was trained on; the world model must have been trained on it)."""
    iterations: int = 10
    """Rounds of collect -> update -> evaluate in the model."""
    states_per_iter: int = 16
    """Real initial states (train split, new ones every iteration) per task and iteration."""
    rollouts_per_state: int = 4
    """Imagined episodes from each initial state (their mean return is the advantage baseline)."""
    n_envs: int = 16
    """Imagined envs stepped in one batched world-model call (also the policy's batch size)."""
    max_episode_steps: Optional[int] = None
    """Cap on imagined episode length (default: the task's step limit)."""
    success_threshold: float = 0.5
    """Success head probability above which an imagined step counts as success."""
    post_success_steps: int = 4
    """Frames after an imagined success that still give action targets (as the recorder keeps)."""
    gamma: float = 0.99
    """Discount of the return-to-go."""
    success_bonus: float = 1.0
    """Reward of an episode's first imagined success."""
    reward_weight: float = 0.0
    """Weight of the reward head's dense reward (0: success only)."""
    beta: float = 1.0
    """awr: temperature of exp(advantage / beta) on normalized advantages."""
    max_weight: float = 20.0
    """awr: clip of the per-sample weights."""
    top_fraction: float = 1.0
    """filtered: keep this fraction of the successful episodes, those with the highest returns."""
    updates_per_iter: int = 100
    """Gradient steps per iteration (awr / filtered)."""
    batch_size: int = 64
    """Samples per gradient step, imagined and demonstration batches alike."""
    lr: float = 1e-5
    """AdamW learning rate (constant; small: refinement starts from a trained policy)."""
    weight_decay: float = 1e-6
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Max gradient norm (awr / filtered)."""
    bc_weight: float = 1.0
    """Weight of the behaviour-cloning loss on the demonstration dataset (the regulariser; 0 = none)."""
    dataset: Optional[str] = None
    """Demonstration dataset for the BC regulariser (default: the one the policy was trained on)."""
    eval_episodes: int = 32
    """Imagined evaluation episodes per task after each iteration (choose the best iteration by their success)."""
    eval_first_trial: int = 100
    """First held-out trial of the in-model evaluation: later than the trials a real evaluation uses (0..)."""
    eval_n_envs: int = 16
    """Imagined envs of the in-model evaluation."""
    use_ema: bool = True
    """Start from the checkpoint's EMA weights (what evaluation uses)."""
    run_name: Optional[str] = None
    """New run folder name (default <imitation run>_refined, then _refined_2, ...); never the imitation run."""
    output_dir: Optional[str] = None
    """Where the run folder goes (default: beside the imitation run)."""
    seed: int = 0
    """Seed of the initial states' order, the policy's and the world model's noise and the batches."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    num_threads: Optional[int] = None
    """torch CPU threads (None = torch's default; 1 when other jobs share the cores)."""
    dppo: DPPOConfig = field(default_factory=DPPOConfig)
    """method=dppo settings."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"refine: method must be one of {', '.join(METHODS)}, got {self.method!r}")
        rules = [
            ("iterations", self.iterations >= 1), ("states_per_iter", self.states_per_iter >= 1),
            ("rollouts_per_state", self.rollouts_per_state >= 1), ("n_envs", self.n_envs >= 1),
            ("max_episode_steps", self.max_episode_steps is None or self.max_episode_steps >= 1),
            ("success_threshold", 0 < self.success_threshold < 1), ("post_success_steps", self.post_success_steps >= 0),
            ("gamma", 0 < self.gamma <= 1), ("beta", self.beta > 0), ("max_weight", self.max_weight > 0),
            ("top_fraction", 0 < self.top_fraction <= 1), ("updates_per_iter", self.updates_per_iter >= 0),
            ("batch_size", self.batch_size >= 1), ("lr", self.lr > 0), ("weight_decay", self.weight_decay >= 0),
            ("grad_clip", self.grad_clip > 0), ("bc_weight", self.bc_weight >= 0),
            ("eval_episodes", self.eval_episodes >= 1), ("eval_first_trial", self.eval_first_trial >= 0),
            ("eval_n_envs", self.eval_n_envs >= 1),
            ("num_threads", self.num_threads is None or self.num_threads >= 1),
        ]
        bad = [f"{n}={getattr(self, n)!r}" for n, ok in rules if not ok]
        if bad:
            raise ValueError(f"refine: invalid {', '.join(bad)}")
        check_device(self.device)
