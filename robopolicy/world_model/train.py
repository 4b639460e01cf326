"""``robopolicy-train-wm`` as a library call: play data (recorded if missing) -> world model.

Same conventions as ``robopolicy-train``: the shared Trainer (AdamW + cosine, EMA, progress,
TensorBoard, atomic safetensors checkpoints under ``<output_dir>/<run>/step_N/``, ``resume``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from robopolicy.paths import slug
from robopolicy.world_model.config import ImageWorldModelConfig, StateWorldModelConfig

OBS = ("state", "image")


@dataclass
class WorldModelTrainConfig:
    """One world-model training run: play data, model, optimization, checkpoints."""

    env: str = "metaworld/mt1/push-v3"
    """Task suite whose dynamics are learned (its scripted expert makes the play data)."""
    obs: str = "state"
    """state (the state world model, ``model.*``) | image (the image world model, ``image_model.*``: next camera frame + next state)."""
    image_size: int = 64
    """obs=image: height = width of the camera frames recorded into a missing play dataset."""
    dataset: Optional[str] = None
    """Play dataset folder (LeRobotDataset v3.0 with next.reward/next.success/next.done); default
    datasets/<env>_play (obs=image: datasets/<env>_play_image<image_size>). Recorded if missing; an
    existing named folder is used as it is."""
    extra_datasets: list[str] = field(default_factory=list)
    """More play datasets trained on together with ``dataset`` (e.g. rollouts of trained policies,
    ``record_play_dataset(..., policy=<checkpoint>)``); normalization comes from ``dataset``."""
    episodes: int = 200
    """Play episodes per task to record into a missing dataset (train trials 0..episodes-1)."""
    noise_levels: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3, 0.6])
    """Std of the Gaussian noise on the expert's actions, cycled over the recorded trials."""
    random_segment_prob: float = 0.02
    """Per-step chance (noisy trials) that a segment of uniform random actions starts."""
    post_success_steps: int = 20
    """Frames recorded after the first success before a play episode stops."""
    record_workers: int = 2
    """Recorder worker processes (0 = in this process)."""
    model: StateWorldModelConfig = field(default_factory=StateWorldModelConfig)
    """The state world model's config, obs=state (``model.objective=regression`` trains the MLP baseline)."""
    image_model: ImageWorldModelConfig = field(default_factory=ImageWorldModelConfig)
    """The image world model's config, obs=image (``image_model.dim=192``, ``image_model.patch_size=8``, ...)."""
    run_name: Optional[str] = None
    """Run folder name under output_dir (default <env>_wm_<objective>; obs=image: <env>_wm_image)."""
    output_dir: str = "checkpoints"
    """Where run folders are written."""
    resume: bool = False
    """Continue a killed run from its last checkpoint (same run_name)."""
    seed: int = 0
    """Seed for torch, numpy and the data order."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
    precision: str = "fp32"
    """fp32 | bf16 (autocast)."""
    steps: int = 20000
    """Optimizer steps."""
    max_minutes: Optional[float] = None
    """Stop training after this many minutes (checkpoints the stopping step)."""
    batch_size: int = 256
    """Transitions per training batch."""
    lr: float = 3e-4
    """Peak AdamW learning rate."""
    weight_decay: float = 1e-6
    """AdamW weight decay."""
    warmup_steps: int = 500
    """Linear warmup steps before the cosine decay."""
    grad_clip: float = 10.0
    """Max gradient norm."""
    ema_decay: float = 0.999
    """Upper bound of the EMA decay."""
    num_threads: Optional[int] = None
    """torch CPU threads (None = torch's default; 1 when other jobs share the cores)."""
    num_workers: int = 0
    """DataLoader worker processes (0: transitions are in memory already)."""
    log_every: int = 100
    """Steps between log lines / TensorBoard points."""
    save_every: int = 2000
    """Steps between checkpoints (the final step is always saved)."""
    save_every_minutes: float = 5.0
    """Also checkpoint once this many minutes passed since the last save (0 = off)."""
    wandb: bool = False
    """Also log to Weights & Biases (needs the optional wandb package)."""

    def __post_init__(self) -> None:
        if self.obs not in OBS:
            raise ValueError(f"obs={self.obs!r}: world models exist for obs=state and obs=image")
        if self.image_size < 1:
            raise ValueError(f"train_wm: invalid image_size={self.image_size!r}")
        if self.obs == "image" and not self.dataset and self.image_size % self.image_model.patch_size:
            raise ValueError(f"image_size={self.image_size} is not divisible by image_model.patch_size="
                             f"{self.image_model.patch_size}: the frames must cut into whole patches")
        rules = [("episodes", self.episodes >= 1), ("steps", self.steps >= 1), ("batch_size", self.batch_size >= 1),
                 ("lr", self.lr > 0), ("save_every", self.save_every >= 1), ("log_every", self.log_every >= 1),
                 ("warmup_steps", self.warmup_steps >= 0), ("grad_clip", self.grad_clip > 0),
                 ("ema_decay", 0 <= self.ema_decay <= 1), ("record_workers", self.record_workers >= 0),
                 ("num_workers", self.num_workers >= 0), ("post_success_steps", self.post_success_steps >= 0),
                 ("max_minutes", self.max_minutes is None or self.max_minutes > 0),
                 ("save_every_minutes", self.save_every_minutes >= 0)]
        bad = [name for name, ok in rules if not ok]
        if bad:
            raise ValueError(f"train_wm: invalid {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")


def default_play_path(env: str, obs: str = "state", image_size: int = 64) -> str:
    return f"datasets/{slug(env)}_play" + (f"_image{int(image_size)}" if obs == "image" else "")


def model_config(cfg: WorldModelTrainConfig):
    """The config of the world model ``cfg`` trains (``model`` or ``image_model`` by ``obs``)."""
    return cfg.image_model if cfg.obs == "image" else cfg.model


def default_run_name(cfg: WorldModelTrainConfig) -> str:
    return f"{slug(cfg.env)}_wm_" + ("image" if cfg.obs == "image" else cfg.model.objective)


def ensure_play_dataset(cfg: WorldModelTrainConfig, progress: bool = True) -> Path:
    """The play dataset to train on: recorded (or an interrupted recording continued) when missing
    at the default path; a named existing folder is used as it is, never appended to."""
    from robopolicy.world_model.play import record_play_dataset

    named = bool(cfg.dataset)
    default = default_play_path(cfg.env, cfg.obs, cfg.image_size)
    path = Path(cfg.dataset or default)
    info = path / "meta" / "info.json"
    have = json.loads(info.read_text()).get("total_episodes", 0) if info.exists() else 0
    if named and info.exists():
        if have == 0:
            raise ValueError(f"play dataset {path} holds no episodes (an interrupted recording?): name another "
                             f"dataset, or leave dataset unset to record into {default}")
        return path
    if named and path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileNotFoundError(f"{path} exists but has no meta/info.json: not a LeRobot dataset, and train-wm "
                                f"will not record into a folder that holds other files")
    from envs import make_suite

    if have < cfg.episodes * len(make_suite(cfg.env).tasks):
        print(f"recording play data of {cfg.env} into {path} ({cfg.episodes} episodes per task, noise levels "
              f"{list(cfg.noise_levels)})")
        record_play_dataset(cfg.env, path, cfg.episodes, obs=cfg.obs, image_size=cfg.image_size,
                            noise_levels=tuple(cfg.noise_levels),
                            random_segment_prob=cfg.random_segment_prob, post_success_steps=cfg.post_success_steps,
                            num_workers=cfg.record_workers, progress=progress)
    return path


def run_wm_training(cfg: WorldModelTrainConfig, progress: bool = True) -> dict:
    """Record play data if missing, train the world model, return where it went."""
    import torch

    from robopolicy.device import pick_device
    from robopolicy.config_utils import to_dict
    from robopolicy.train.trainer import Trainer, seed_everything
    from robopolicy.world_model.data import TransitionWindows, concat_episodes, load_episodes

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    path = ensure_play_dataset(cfg, progress)
    missing = [d for d in cfg.extra_datasets if not (Path(d) / "meta" / "info.json").is_file()]
    if missing:
        raise FileNotFoundError(f"extra_datasets {missing}: no LeRobot dataset there (meta/info.json)")
    mcfg = model_config(cfg)

    def load(cameras=()):
        return concat_episodes([load_episodes(d, camera_keys=cameras) for d in [path, *cfg.extra_datasets]])

    if cfg.obs == "image":
        from robopolicy.world_model.image_model import ImageWorldModel

        episodes = load([play_camera(path, cfg.image_model.camera)])
        model = ImageWorldModel.from_episodes(mcfg, episodes)
        windows = TransitionWindows(episodes, mcfg.n_history, 1)
        kind = "image"
    else:
        from robopolicy.world_model.state_model import StateWorldModel

        episodes = load()
        model = StateWorldModel.from_episodes(mcfg, episodes)
        windows = TransitionWindows(episodes, mcfg.n_history, mcfg.n_future)
        kind = mcfg.objective
    run_dir = Path(cfg.output_dir) / (cfg.run_name or default_run_name(cfg))
    if run_dir.exists() and not cfg.resume and any(run_dir.glob("step_*")):
        raise FileExistsError(f"{run_dir} already holds checkpoints: pass resume=true to continue it, "
                              f"or run_name=<new name> to start another run")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"world model ({kind}): {n_params / 1e6:.2f} M parameters; play data {path}"
          + "".join(f" + {d}" for d in cfg.extra_datasets) + ": "
          f"{episodes.num_episodes} episodes, {len(windows)} frames "
          f"({int(episodes.episode_success().sum())} successful episodes); run folder {run_dir}")
    train_dict = to_dict(cfg)
    train_dict["dataset"] = str(path)
    trainer = Trainer(model.to(pick_device(cfg.device)), windows, cfg, run_dir, train_dict, None, progress)
    t0 = time.monotonic()
    trainer.fit()
    return {"run_dir": str(run_dir), "train_steps": trainer.step, "train_minutes": (time.monotonic() - t0) / 60,
            "dataset": str(path), "parameters": n_params}


def play_camera(path: str | Path, camera: str | None) -> str:
    """The camera key an image world model trains on: ``camera`` or the dataset's first camera."""
    from robopolicy.data.metadata import DatasetMeta
    from robopolicy.types import IMAGE_PREFIX

    cams = DatasetMeta.load(Path(path)).camera_keys
    if not cams:
        raise ValueError(f"{path}: the play dataset has no camera; an image world model needs one (record it "
                         f"with robopolicy-train-wm obs=image, or name a dataset recorded with obs=image)")
    if camera is None:
        return cams[0]
    key = IMAGE_PREFIX + camera
    if key not in cams:
        raise ValueError(f"{path}: no camera {camera!r} (image_model.camera); the dataset has {cams}")
    return key
