"""``robopolicy-eval`` as a library call: a checkpoint, a suite, N episodes -> eval_info.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING


@dataclass
class EvalJobConfig:
    """Evaluate a checkpoint in simulation."""

    checkpoint: str = MISSING
    """A run folder (its newest checkpoint) or a step_<N> folder."""
    env: Optional[str] = None
    """Suite to evaluate on (default: the suite the checkpoint was trained on)."""
    episodes: int = 50
    """Episodes per task, on the suite's held-out initial states."""
    n_envs: int = 2
    """Environments stepped in parallel worker processes."""
    videos: int = 3
    """Episodes saved as mp4 (0 = none)."""
    scheduler: str = "sync"
    """Chunk scheduling: sync | ensemble | async (the robot control loop's code)."""
    output: Optional[str] = None
    """Results folder (default <checkpoint step folder>/eval/<env slug>[_<settings>]: see eval_tag)."""
    use_ema: bool = True
    """Evaluate the EMA weights (as trained policies are meant to be used)."""
    device: str = "auto"
    """auto | cpu | cuda."""
    seed: int = 0
    """Seed for the policy's sampling noise (each episode gets its own stream from it and its initial state)."""
    noise: str = "episode"
    """episode (one noise stream per episode: results independent of n_envs, equal to robopolicy-deploy clock=sim) | batch (one batched call per chunk: faster with many envs on a GPU)."""
    perturb_step: int = 0
    """0 = no perturbation; else displace the object once at this env step (recovery test)."""
    first_trial: int = 0
    """Evaluate trials first_trial .. first_trial + episodes - 1 of the held-out initial states."""
    policy_overrides: dict[str, Any] = field(default_factory=dict)
    """Policy config fields changed for this evaluation, e.g. ``+policy_overrides.decode_rounds=4``."""
    world_model: Optional[str] = None
    """A world-model checkpoint (robopolicy-train-wm): run the episodes inside it, from the real initial states."""


def run_eval(cfg: EvalJobConfig, progress: bool = True) -> dict:
    import torch

    from robopolicy.device import pick_device
    from robopolicy.eval import evaluate
    from robopolicy.paths import results_dir
    from robopolicy.train.checkpoint import load_policy, load_train_config, resolve_checkpoint

    step_dir = resolve_checkpoint(cfg.checkpoint)
    train_cfg = load_train_config(step_dir)
    env = cfg.env or train_cfg.get("env")
    if env is None:
        raise ValueError(f"{step_dir} has no config.yaml naming its env: pass env=<suite>")
    obs = train_cfg.get("obs", "image" if _has_cameras(step_dir) else "state")
    image_size = int(train_cfg.get("image_size", 84))
    torch.manual_seed(cfg.seed)
    policy = load_policy(step_dir, use_ema=cfg.use_ema, device=pick_device(cfg.device),
                         overrides=dict(cfg.policy_overrides or {}))
    out = Path(cfg.output) if cfg.output else results_dir(step_dir, "eval", env, eval_tag(cfg))
    suite = env
    if cfg.world_model:  # imagined episodes behind the same suite / vector-env API
        from robopolicy.world_model.env import world_model_suite

        suite = world_model_suite(cfg.world_model, env, policy, device=pick_device(cfg.device))
    return evaluate(policy, suite, episodes=cfg.episodes, obs=obs, image_size=image_size, n_envs=cfg.n_envs,
                    scheduler=cfg.scheduler, video_dir=out / "videos" if cfg.videos else None,
                    n_videos=cfg.videos, out_dir=out, progress=progress, perturb_step=cfg.perturb_step,
                    first_trial=cfg.first_trial, seed=cfg.seed, noise=cfg.noise)


def default_eval_dir(step_dir: str | Path, env: str, **settings: Any) -> Path:
    """The default results folder of ``robopolicy-eval`` of ``step_dir`` on ``env`` with these
    ``EvalJobConfig`` fields: ``<step>/eval/<env slug>[_<eval_tag>]``."""
    from robopolicy.paths import results_dir

    return results_dir(step_dir, "eval", env, eval_tag(EvalJobConfig(checkpoint=str(step_dir), **settings)))


def eval_tag(cfg: EvalJobConfig) -> str | None:
    """The settings of ``cfg`` that change what is measured, as the default results folder's
    suffix (None: defaults), so evaluations of one checkpoint under other settings do not
    overwrite each other: world_model, the policy overrides (key-value), from<first_trial>,
    perturb<step>, the scheduler, noise-batch, seed<seed>, live (not EMA) weights."""
    parts = ["world_model"] if cfg.world_model else []
    parts += [f"{k}-{v}" for k, v in sorted(dict(cfg.policy_overrides or {}).items())]
    parts += [f"from{cfg.first_trial}"] if cfg.first_trial else []
    parts += [f"perturb{cfg.perturb_step}"] if cfg.perturb_step else []
    parts += [cfg.scheduler] if cfg.scheduler != "sync" else []
    parts += [f"noise-{cfg.noise}"] if cfg.noise != "episode" else []
    parts += [f"seed{cfg.seed}"] if cfg.seed != 0 else []
    parts += ["live"] if not cfg.use_ema else []
    return "_".join(parts) or None


def _has_cameras(step_dir: Path) -> bool:
    import json

    return bool(json.loads((step_dir / "meta.json").read_text())["features"].get("cameras"))
