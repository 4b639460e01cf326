"""The main job as a library call: demonstrations (recorded if missing) -> policy -> trained
policy -> success rate. ``robopolicy-train`` is a thin Hydra wrapper around ``run_training``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robopolicy import registry
from robopolicy.config_utils import from_dict, to_dict
from robopolicy.device import pick_device
from robopolicy.paths import default_dataset_path, slug
from robopolicy.train.config import TrainConfig
from robopolicy.train.trainer import Trainer, seed_everything


def ensure_dataset(cfg: TrainConfig, suite) -> Path:
    """The dataset folder to train on, with expert demonstrations recorded where that is safe.

    Without ``cfg.dataset`` the folder is the recorder's cache ``datasets/<env>_<obs>``: recorded
    if missing and topped up to ``cfg.episodes`` per task. A folder named by ``cfg.dataset`` is
    recorded only if it does not exist yet; an existing one is used as it is, never written to,
    since it may hold other data (a robot's, or a recording made with other settings). Add
    episodes to it with ``python -m robopolicy.cli.record``.
    """
    from robopolicy.data import record_dataset
    from robopolicy.data.metadata import read_info

    named = bool(cfg.dataset)
    path = Path(cfg.dataset or default_dataset_path(cfg.env, cfg.obs))
    info = path / "meta" / "info.json"
    wanted = cfg.episodes * len(suite.tasks)
    # Checked: a damaged info.json is named with what is wrong with it (and what to do).
    have = read_info(path)["total_episodes"] if info.exists() else 0
    if named and info.exists():
        if have == 0:
            raise ValueError(f"dataset {path} holds no episodes (an interrupted recording?): finish it with "
                             f"python -m robopolicy.cli.record output={path} ..., or name another dataset")
        if have < wanted:
            print(f"dataset {path} holds {have} episodes (episodes={cfg.episodes} asks {wanted}); training on "
                  f"them as they are: a named dataset is never appended to")
        return path
    if named and path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileNotFoundError(f"{path} exists but has no {info.relative_to(path)}: not a LeRobot dataset, and "
                                f"the trainer will not record into a folder that holds other files")
    if have < wanted:
        print(f"recording {wanted - have} more expert episodes of {cfg.env} ({cfg.obs}) into {path}")
        record_dataset(cfg.env, str(path), episodes=cfg.episodes, obs=cfg.obs, image_size=cfg.image_size)
    return path


def build_policy(policy_name: str, policy_cfg: Any, features, stats):
    cls = registry.get("policy", policy_name)
    config = policy_cfg if isinstance(policy_cfg, cls.config_class) else from_dict(cls.config_class, to_dict(policy_cfg))
    return cls(config, features, stats)


def choose_run_dir(cfg: TrainConfig, policy_name: str) -> Path:
    """The run folder: ``output_dir/run_name``, by default ``<env>_<policy>_<obs>``.

    A run folder that already holds checkpoints is continued with ``resume=true``; without it, a
    named run (``run_name=``) is refused, while the default name moves on to the first free
    ``<default>_2``, ``_3``, ... (running the main job again trains a new run, it does not fail)."""
    default = f"{slug(cfg.env)}_{policy_name}_{cfg.obs}"
    run_dir = Path(cfg.output_dir) / (cfg.run_name or default)
    if cfg.resume or not _has_checkpoints(run_dir):
        return run_dir
    if cfg.run_name:
        raise FileExistsError(f"{run_dir} already holds checkpoints: pass resume=true to continue it, "
                              f"or run_name=<new name> to start another run")
    n = 2
    while _has_checkpoints(Path(cfg.output_dir) / f"{default}_{n}"):
        n += 1
    new = Path(cfg.output_dir) / f"{default}_{n}"
    print(f"{run_dir} already holds a run: this one goes to {new} (resume=true continues {run_dir}; "
          f"run_name={new.name} resume=true continues this one)")
    return new


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _has_checkpoints(run_dir: Path) -> bool:
    return run_dir.is_dir() and any(run_dir.glob("step_*"))


def run_training(cfg: TrainConfig, policy_name: str, progress: bool = True, run_dir: str | Path | None = None) -> dict:
    """Train ``policy_name`` as ``cfg`` says, evaluate it, and return the evaluation summary
    (``eval.episodes=0``: train only; the summary then holds no success rate). ``run_dir``
    defaults to ``choose_run_dir(cfg, policy_name)``.

    ``train_steps`` / ``train_minutes`` count the whole run (earlier processes of a resumed run
    included), ``steps_this_process`` / ``minutes_this_process`` this call alone."""
    from envs import make_suite
    from robopolicy.data import LeRobotDataset
    from robopolicy.eval import evaluate

    from accelerate import PartialState

    # Under `accelerate launch` several processes run this: the main one records the dataset and
    # picks the run folder (the others wait, then use the same), and it alone evaluates.
    dist = PartialState(cpu=cfg.device == "cpu" or (cfg.device == "auto" and not _cuda()))
    if run_dir is None:
        run_dir = choose_run_dir(cfg, policy_name) if dist.is_main_process else None
    if dist.num_processes > 1:  # the main process's choice, whatever the others found
        from accelerate.utils import broadcast_object_list

        run_dir = broadcast_object_list([None if run_dir is None else str(run_dir)])[0]
    run_dir = Path(run_dir)
    if cfg.num_threads:
        import torch

        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    suite = make_suite(cfg.env, obs=cfg.obs, image_size=cfg.image_size)
    with dist.main_process_first():
        ds_path = ensure_dataset(cfg, suite)
    use_language = cfg.use_language if cfg.use_language is not None else len(suite.tasks) > 1
    meta_ds = LeRobotDataset(ds_path, camera_keys=[])
    features = meta_ds.feature_spec(use_language=use_language)
    if cfg.obs == "state":
        features.cameras = {}
    elif cfg.cameras:
        missing = [c for c in cfg.cameras if c not in features.cameras]
        if missing:
            raise ValueError(f"cameras {missing} are not in dataset {ds_path} (has {sorted(features.cameras)})")
        features.cameras = {c: features.cameras[c] for c in cfg.cameras}
    else:
        first = next(iter(features.cameras), None)
        features.cameras = {first: features.cameras[first]} if first else {}
    # exact action quantiles (the tokenizer's q01..q99 bin range), not stats.json's per-episode average
    policy = build_policy(policy_name, cfg.policy, features, meta_ds.training_stats())
    dataset = LeRobotDataset(ds_path, delta_timestamps=policy.delta_timestamps(), camera_keys=features.image_keys)
    if cfg.action_free_datasets:  # video-only co-training: their frames are used, their actions are not
        from robopolicy.data.action_free import with_action_free

        dataset = with_action_free(dataset, cfg.action_free_datasets, policy)

    train_dict = to_dict(cfg)
    train_dict["policy_name"] = policy_name
    n_params = sum(p.numel() for p in policy.parameters())
    dist.print(f"policy {policy_name}: {n_params / 1e6:.2f} M parameters; dataset {ds_path}: "
               f"{meta_ds.num_episodes} episodes, {len(dataset)} frames; run folder {run_dir}")

    def periodic_eval(p, episodes):
        return evaluate(p, cfg.env, episodes=episodes, obs=cfg.obs, image_size=cfg.image_size,
                        n_envs=cfg.eval.n_envs, scheduler=cfg.eval.scheduler, progress=False,
                        perturb_step=cfg.eval.perturb_step)

    trainer = Trainer(policy.to(pick_device(cfg.device)), dataset, cfg, run_dir, train_dict, periodic_eval, progress)
    ema_policy = trainer.fit()
    counts = {"train_steps": trainer.step, "train_minutes": trainer.train_seconds() / 60,
              "steps_this_process": trainer.step - trainer.start_step,
              "minutes_this_process": trainer.fit_seconds() / 60, "resumed_from_step": trainer.start_step,
              "run_dir": str(run_dir), "main_process": dist.is_main_process}
    if cfg.eval.episodes == 0 or not dist.is_main_process:
        return {"success_rate": None, "episodes": 0, **counts}
    from robopolicy.eval.job import default_eval_dir
    from robopolicy.train.checkpoint import resolve_checkpoint

    # the folder (and the noise seed) robopolicy-eval of the final checkpoint uses for these settings
    eval_dir = default_eval_dir(resolve_checkpoint(run_dir), cfg.env, scheduler=cfg.eval.scheduler,
                                perturb_step=cfg.eval.perturb_step, seed=cfg.seed)
    result = evaluate(
        ema_policy, cfg.env, episodes=cfg.eval.episodes, obs=cfg.obs, image_size=cfg.image_size,
        n_envs=cfg.eval.n_envs, scheduler=cfg.eval.scheduler, video_dir=eval_dir / "videos",
        n_videos=cfg.eval.videos, out_dir=eval_dir, progress=progress,
        perturb_step=cfg.eval.perturb_step, seed=cfg.seed,
    )
    result.update(counts)
    return result
