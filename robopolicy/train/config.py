"""The typed training configuration (Hydra schema ``train_schema``; YAML in configs/train.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from robopolicy.config_utils import check_device, check_suite


@dataclass
class EvalConfig:
    """Evaluation rollouts (after training, periodically during it, and in robopolicy-eval)."""

    episodes: int = 50
    """Episodes per task, on the suite's held-out ("eval") initial states (0 = train only, no final evaluation)."""
    n_envs: int = 2
    """Environments stepped in parallel worker processes (both cores)."""
    videos: int = 3
    """Episodes recorded to mp4 (0 = none)."""
    scheduler: str = "sync"
    """Chunk scheduling: sync | ensemble | async (same code as the robot control loop)."""
    every: int = 0
    """Evaluate every N training steps with ``during_episodes`` episodes (0 = only at the end)."""
    during_episodes: int = 10
    """Episodes per task for the periodic evaluation during training."""
    perturb_step: int = 0
    """0 = no perturbation; else displace the object once at this env step (recovery test)."""

    def __post_init__(self):
        # checked when the config is built, so a bad value fails before training rather than after it
        bad = {k: v for k, v in (("episodes", self.episodes), ("videos", self.videos), ("every", self.every),
                                 ("perturb_step", self.perturb_step)) if v < 0}
        if self.n_envs < 1 or self.during_episodes < 1:
            bad.update(n_envs=self.n_envs, during_episodes=self.during_episodes)
        if bad:
            raise ValueError(f"eval: episodes, videos, every, perturb_step must be >= 0 and n_envs, "
                             f"during_episodes >= 1; got {bad}")
        if self.scheduler not in ("sync", "ensemble", "async"):
            raise ValueError(f"eval.scheduler must be sync, ensemble or async; got {self.scheduler!r}")


@dataclass
class TrainConfig:
    """One training run: data, policy, optimization, checkpoints, evaluation."""

    policy: Any = MISSING
    """The policy family's config (choose with ``policy=<name>``: one of the registered families)."""
    env: str = "metaworld/mt1/button-press-topdown-v3"
    """Task suite: pushblock | metaworld/mt1/<task> | metaworld/mt10 | metaworld/mt50 | robosuite/<task>.
    The default, with ``episodes`` and ``steps``, is the README's main job: a Meta-World task that
    Diffusion Policy learns in a few CPU minutes (docs/benchmarks.md, "Main job")."""
    obs: str = "state"
    """Observation modality: state | image (image = state + the suite's cameras)."""
    image_size: int = 84
    """Square camera resolution when obs=image."""
    cameras: Optional[list[str]] = None
    """Camera subset for obs=image (None = the suite's first camera)."""
    dataset: Optional[str] = None
    """Dataset folder (LeRobotDataset v3.0); default datasets/<env>_<obs>. Recorded if missing; an
    existing named folder is used as it is and never appended to."""
    action_free_datasets: Optional[list[str]] = None
    """Extra dataset folders of the same tasks whose frames are used and actions are not (video-only
    co-training); only for families that learn from action-free samples (pad)."""
    episodes: int = 50
    """Expert demonstrations per task to record into a missing dataset or a short default one."""
    use_language: Optional[bool] = None
    """Condition on the task instruction (None = only for multi-task suites)."""
    run_name: Optional[str] = None
    """Run folder name under output_dir (default <env>_<policy>_<obs>)."""
    output_dir: str = "checkpoints"
    """Where run folders are written."""
    resume: bool = False
    """Continue a killed run from its last checkpoint (same run_name)."""
    seed: int = 0
    """Seed for torch, numpy and the data order."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    precision: str = "fp32"
    """fp32 | bf16 (autocast; on CUDA and on CPUs with AMX/AVX512-BF16)."""
    steps: int = 2000
    """Optimizer steps (the main job's; harder tasks need more: docs/benchmarks.md lists each
    benchmark's steps, e.g. 12000 for push-v3)."""
    max_minutes: Optional[float] = None
    """Stop training after this many minutes (a time budget; checkpoints the stopping step)."""
    batch_size: int = 64
    """Training batch size (per process)."""
    lr: float = 1e-4
    """Peak AdamW learning rate."""
    weight_decay: float = 1e-6
    """AdamW weight decay."""
    warmup_steps: int = 500
    """Linear warmup steps before the cosine decay."""
    grad_clip: float = 10.0
    """Max gradient norm."""
    ema_decay: float = 0.9999
    """Upper bound of the EMA decay (power-0.75 warmup as in Chi et al.)."""
    num_threads: Optional[int] = None
    """torch CPU threads (None = torch's default, one per core; 1 when other jobs share the cores)."""
    num_workers: int = 0
    """DataLoader worker processes (0 = in the training process; best for small state datasets)."""
    log_every: int = 50
    """Steps between log lines / TensorBoard points."""
    save_every: int = 1000
    """Steps between checkpoints (the final step is always saved)."""
    save_every_minutes: float = 5.0
    """Also checkpoint once this many minutes passed since the last save: a killed run loses at most that (0 = off)."""
    wandb: bool = False
    """Also log to Weights & Biases (needs the optional wandb package)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation settings."""

    def __post_init__(self):
        # checked when the config is built (Hydra's to_object or a direct call), before any
        # recording or training: a value that would train nothing or crash later fails here
        rules = [
            ("steps", self.steps >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"), ("save_every", self.save_every >= 1, ">= 1"),
            ("save_every_minutes", self.save_every_minutes >= 0, ">= 0"),
            ("max_minutes", self.max_minutes is None or self.max_minutes > 0, "> 0 or null"),
            ("log_every", self.log_every >= 1, ">= 1"), ("warmup_steps", self.warmup_steps >= 0, ">= 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"), ("grad_clip", self.grad_clip > 0, "> 0"),
            ("ema_decay", 0 <= self.ema_decay <= 1, "in [0, 1]"), ("episodes", self.episodes >= 1, ">= 1"),
            ("image_size", self.image_size >= 1, ">= 1"), ("num_workers", self.num_workers >= 0, ">= 0"),
            ("num_threads", self.num_threads is None or self.num_threads >= 1, ">= 1 or null"),
        ]
        bad = [f"{name} must be {rule}, got {getattr(self, name)!r}" for name, ok, rule in rules if not ok]
        if bad:
            raise ValueError("train: " + "; ".join(bad))
        if self.obs not in ("state", "image"):
            raise ValueError(f"obs must be 'state' or 'image', got {self.obs!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        check_device(self.device)
        check_suite(self.env)
