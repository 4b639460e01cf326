"""``robopolicy-refine`` as a library call: an imitation policy refined by RL inside a world model.

Every iteration: collect imagined episodes from new real initial states (train split) with the
current policy (``collect.collect_imagined``: the evaluator's loop in the world model's vector env),
score them with the model's success / reward heads (``returns``), update the policy (the method),
evaluate it inside the model on held-out trials from ``eval_first_trial`` on (``evaluate`` on the
world-model suite), and checkpoint it. Iteration 0 is the imitation policy itself, evaluated the
same way, so a refinement that never beats it leaves its weights as the result.

Methods (``method=``):

* ``awr``: advantage-weighted behaviour cloning, for every family: imagined steps are drawn in
  proportion to ``min(exp(A / beta), max_weight)`` and trained through the policy's own
  ``loss(batch)`` on batches built like the dataset's (``transitions``), plus ``bc_weight`` times
  the same loss on a demonstration batch (the regulariser that keeps it near the data).
* ``filtered``: the same with weight 1 on the imagined successes (the best ``top_fraction``).
* ``dppo``: Diffusion Policy, PPO over the last ``dppo.k_steps`` denoising steps (``rl/dppo.py``).

Safety: the imitation checkpoint is only read. Everything goes to a new run folder (default
``<imitation run>_refined``, beside it): ``step_<N>`` is iteration N (all kept), ``last`` and
``best`` name the iteration with the highest imagined success so far (the first one on ties, so
iteration 0 unless refinement helped), and ``refine.json`` logs every iteration. The checkpoints
are ordinary policy checkpoints (model and EMA files hold the refined weights; config.yaml is the
imitation run's training config plus ``refine`` and ``refined_from``): robopolicy-eval, -deploy and
-serve load them unchanged.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from robopolicy.config_utils import to_dict
from robopolicy.rl.collect import CappedSuite, Rollouts, collect_imagined
from robopolicy.rl.config import RefineConfig
from robopolicy.rl.returns import advantages, awr_weights, filter_weights, returns_to_go, step_rewards
from robopolicy.rl.transitions import ImaginedTransitions
from robopolicy.rl.update import step as update_step, with_bc


# --- folders ----------------------------------------------------------------------------------------
def imitation_run_dir(step_dir: Path) -> Path:
    """The run folder a step folder belongs to (the step folder itself when it stands alone)."""
    parent = step_dir.parent
    return parent if step_dir.name.startswith("step_") or (parent / "last").exists() else step_dir


def _inside(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


def _has_checkpoints(run_dir: Path) -> bool:
    return run_dir.is_dir() and any(run_dir.glob("step_*"))


def choose_refine_dir(cfg: RefineConfig, step_dir: Path) -> Path:
    """``output_dir/run_name`` (default: beside the imitation run, ``<run>_refined``; the first free
    ``_refined_2``, ``_3``, ... when that holds checkpoints). Never the imitation run or a folder
    inside or around it; a named run that already holds checkpoints is refused."""
    source = imitation_run_dir(step_dir)
    out = Path(cfg.output_dir) if cfg.output_dir else source.parent
    default = f"{source.name}_refined"
    run_dir = out / (cfg.run_name or default)
    if _inside(run_dir, source) or _inside(source, run_dir):
        raise ValueError(f"refine: the refined run {run_dir} would be inside or around the imitation run {source}: "
                         f"refinement never writes there; choose another run_name / output_dir")
    if not _has_checkpoints(run_dir):
        return run_dir
    if cfg.run_name:
        raise FileExistsError(f"{run_dir} already holds checkpoints: choose another run_name")
    n = 2
    while _has_checkpoints(out / f"{default}_{n}"):
        n += 1
    return out / f"{default}_{n}"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- scoring ----------------------------------------------------------------------------------------
def sample_weights(rollouts: Rollouts, cfg: RefineConfig) -> np.ndarray:
    """(E, T) per-step sample weights of the generic methods (see ``returns``)."""
    r = step_rewards(rollouts.rewards, rollouts.length, rollouts.success, cfg.reward_weight, cfg.success_bonus)
    G = returns_to_go(r, cfg.gamma)
    valid = rollouts.valid
    if cfg.method == "filtered":
        return filter_weights(G[:, 0], rollouts.success, valid, cfg.top_fraction)
    return awr_weights(advantages(G, valid, rollouts.groups), valid, cfg.beta, cfg.max_weight)


class DemoBatches:
    """Random batches of the demonstration dataset (the behaviour-cloning regulariser)."""

    def __init__(self, dataset: Any, batch_size: int, device: torch.device, generator: torch.Generator):
        self.dataset, self.batch_size, self.device, self.generator = dataset, batch_size, device, generator

    def __call__(self) -> dict[str, Any]:
        from torch.utils.data import default_collate

        idx = torch.randint(0, len(self.dataset), (self.batch_size,), generator=self.generator)
        batch = default_collate([self.dataset[int(i)] for i in idx])
        return {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in batch.items()}


# --- the generic method -----------------------------------------------------------------------------
class WeightedBC:
    """awr / filtered: weighted behaviour cloning on imagined steps through ``policy.loss``."""

    def __init__(self, cfg: RefineConfig):
        self.cfg = cfg

    def make_source(self, policy: torch.nn.Module, dt: float) -> Callable[[int], Any] | None:
        return None  # the evaluator's PolicySource

    def update(self, policy: torch.nn.Module, rollouts: Rollouts, optimizer: torch.optim.Optimizer,
               demo: DemoBatches | None, generator: torch.Generator, device: torch.device) -> dict[str, float]:
        cfg = self.cfg
        trans = ImaginedTransitions(rollouts, policy.delta_timestamps(), policy.features.fps,
                                    sample_weights(rollouts, cfg))
        use_demo = demo is not None and cfg.bc_weight > 0
        info = {"samples": float(len(trans)), "updates": 0.0}
        if len(trans) == 0 and not use_demo:
            return info
        params = [p for p in policy.parameters() if p.requires_grad]
        losses, bc_losses = [], []
        policy.train()
        for _ in range(cfg.updates_per_iter):
            loss = torch.zeros((), device=device)
            if len(trans):
                li, _ = policy.loss(trans.batch(trans.sample(cfg.batch_size, generator), device))
                loss = loss + li
                losses.append(float(li.detach()))
            loss = with_bc(loss, policy, demo if use_demo else None, cfg.bc_weight, bc_losses)
            update_step(loss, optimizer, params, cfg.grad_clip, "refine")
        policy.eval()
        info.update(updates=float(cfg.updates_per_iter),
                    imagined_loss=float(np.mean(losses)) if losses else float("nan"),
                    bc_loss=float(np.mean(bc_losses)) if bc_losses else float("nan"))
        return info


def make_method(cfg: RefineConfig, policy: torch.nn.Module):
    if cfg.method == "dppo":
        from robopolicy.rl.dppo import DPPO

        return DPPO(cfg, policy)
    return WeightedBC(cfg)


# --- the job ----------------------------------------------------------------------------------------
def imagined_success(policy: torch.nn.Module, suite: Any, cfg: RefineConfig) -> dict[str, Any]:
    """The in-model evaluation that picks the best iteration: ``eval_episodes`` held-out trials per
    task from ``eval_first_trial`` on, the same trials and noise seed every iteration."""
    from robopolicy.eval import evaluate

    res = evaluate(policy, suite, episodes=cfg.eval_episodes, n_envs=cfg.eval_n_envs, first_trial=cfg.eval_first_trial,
                   seed=cfg.seed, noise="batch", progress=False, n_videos=0)
    return {"success_rate": float(res["success_rate"]), "ci95": res["ci95"], "mean_length": res["mean_length"]}


def check_inputs(cfg: RefineConfig) -> tuple[Path, Path]:
    """The imitation step folder and the world-model step folder, checked (one-line errors)."""
    from robopolicy.train.checkpoint import resolve_checkpoint
    from robopolicy.world_model.checkpoint import read_meta

    step_dir = resolve_checkpoint(cfg.checkpoint)
    try:
        meta = json.loads((step_dir / "meta.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{step_dir / 'meta.json'} is not valid JSON: {e}") from e
    if meta.get("kind", "policy") != "policy":
        raise ValueError(f"checkpoint={cfg.checkpoint}: {step_dir} holds a {meta['kind']}, not a policy")
    try:
        wm_dir = resolve_checkpoint(cfg.world_model)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"world_model={cfg.world_model}: {e}") from None
    read_meta(wm_dir)  # refuses a policy checkpoint given as the world model
    if cfg.method == "dppo" and meta.get("policy") != "diffusion":
        raise ValueError(f"method=dppo refines Diffusion Policy checkpoints; {step_dir} holds a "
                         f"{meta.get('policy')!r} policy (method=awr or method=filtered work for every family)")
    return step_dir, wm_dir


def run_refine(cfg: RefineConfig, progress: bool = True,
               evaluate_fn: Callable[[torch.nn.Module, Any, RefineConfig], dict[str, Any]] | None = None) -> dict:
    """Refine ``cfg.checkpoint`` inside ``cfg.world_model``; returns the log (also ``refine.json``).
    ``evaluate_fn(policy, suite, cfg)`` replaces the in-model evaluation (``imagined_success``)."""
    return run_prepared(prepare_refine(cfg, progress), evaluate_fn)


def prepare_refine(cfg: RefineConfig, progress: bool = True) -> dict[str, Any]:
    """Everything loaded and checked before anything is written: the policy, the world-model suite,
    the demonstration dataset, the new run folder (errors here are the user's to fix)."""
    from robopolicy.data import LeRobotDataset
    from robopolicy.device import pick_device
    from robopolicy.paths import default_dataset_path
    from robopolicy.train.checkpoint import load_policy, load_train_config
    from robopolicy.train.trainer import seed_everything
    from robopolicy.world_model.env import world_model_suite

    step_dir, wm_dir = check_inputs(cfg)
    train_cfg = load_train_config(step_dir)
    env = cfg.env or train_cfg.get("env")
    if env is None:
        raise ValueError(f"{step_dir} has no config.yaml naming its env: pass env=<suite>")
    run_dir = choose_refine_dir(cfg, step_dir)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    policy = load_policy(step_dir, use_ema=cfg.use_ema, device=device)
    suite = CappedSuite(world_model_suite(str(wm_dir), env, policy, device=device,
                                          success_threshold=cfg.success_threshold), cfg.max_episode_steps)
    demo_ds = None
    if cfg.bc_weight > 0:
        obs = train_cfg.get("obs", "image" if policy.features.cameras else "state")
        ds_path = Path(cfg.dataset or train_cfg.get("dataset") or default_dataset_path(env, obs))
        if not (ds_path / "meta" / "info.json").exists():
            raise FileNotFoundError(f"refine: the demonstration dataset {ds_path} (the BC regulariser) does not "
                                    f"exist: pass dataset=<folder>, or bc_weight=0 to refine without it")
        demo_ds = LeRobotDataset(ds_path, delta_timestamps=policy.delta_timestamps(),
                                 camera_keys=policy.features.image_keys)
    method = make_method(cfg, policy)
    return {"cfg": cfg, "progress": progress, "step_dir": step_dir, "wm_dir": wm_dir, "train_cfg": train_cfg,
            "env": env, "run_dir": run_dir, "device": device, "policy": policy, "suite": suite, "demo_ds": demo_ds,
            "method": method}


def run_prepared(p: dict[str, Any],
                 evaluate_fn: Callable[[torch.nn.Module, Any, RefineConfig], dict[str, Any]] | None = None) -> dict:
    """The refinement loop on what ``prepare_refine`` loaded."""
    from robopolicy.train.checkpoint import save_checkpoint

    cfg, policy, suite, method, device = p["cfg"], p["policy"], p["suite"], p["method"], p["device"]
    step_dir, wm_dir, run_dir, env, demo_ds = p["step_dir"], p["wm_dir"], p["run_dir"], p["env"], p["demo_ds"]
    say = print if p["progress"] else (lambda *a, **k: None)
    evaluate_fn = evaluate_fn or imagined_success
    generator = torch.Generator().manual_seed(cfg.seed)
    demo = DemoBatches(demo_ds, cfg.batch_size, device, generator) if demo_ds is not None else None
    optimizer = torch.optim.AdamW([q for q in policy.parameters() if q.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    saved_cfg = {**p["train_cfg"], "refine": to_dict(cfg), "refined_from": str(step_dir)}
    log: dict[str, Any] = {"refined_from": str(step_dir), "world_model": str(wm_dir), "env": env,
                           "method": cfg.method, "run_dir": str(run_dir), "iterations": [], "best_iteration": 0,
                           "best_imagined_success": None}
    say(f"refining {step_dir} inside {wm_dir} ({cfg.method}); run folder {run_dir}")

    def checkpoint(it: int, row: dict[str, Any]) -> None:
        n = policy.calibration_batches() if hasattr(policy, "calibration_batches") else 0
        if n > 0 and demo is not None:  # e.g. EBT's stop threshold, refit for the new weights
            rng = torch.get_rng_state()
            policy.calibrate([demo() for _ in range(n)])
            torch.set_rng_state(rng)
        save_checkpoint(run_dir, it, policy, policy.state_dict(), None, saved_cfg, keep_last=0)
        log["iterations"].append(row)
        best = log["best_imagined_success"]
        if best is None or row["imagined_success"] > best:
            log["best_iteration"], log["best_imagined_success"] = it, row["imagined_success"]
        name = f"step_{log['best_iteration']:08d}\n"
        _write_atomic(run_dir / "last", name)  # every loader (resolve_checkpoint) takes the best
        _write_atomic(run_dir / "best", name)
        _write_atomic(run_dir / "refine.json", json.dumps(log, indent=2))

    t0 = time.monotonic()
    res0 = evaluate_fn(policy, suite, cfg)
    checkpoint(0, {"iteration": 0, "imagined_success": res0["success_rate"], "eval": res0, "note": "imitation"})
    say(f"iteration 0 (imitation): imagined success {res0['success_rate']:.1%}")
    dt = 1.0 / float(suite.fps)
    for it in range(1, cfg.iterations + 1):
        trials = range((it - 1) * cfg.states_per_iter, it * cfg.states_per_iter)
        starts = [(task, suite.trial_seed(task, t, "train")) for task in suite.tasks for t in trials
                  for _ in range(cfg.rollouts_per_state)]
        rollouts = collect_imagined(policy, suite, starts, cfg.n_envs, seed=cfg.seed * 100003 + it,
                                    post_success_steps=cfg.post_success_steps,
                                    make_source=method.make_source(policy, dt))
        info = method.update(policy, rollouts, optimizer, demo, generator, device)
        res = evaluate_fn(policy, suite, cfg)
        row = {"iteration": it, "imagined_success": res["success_rate"], "eval": res,
               "collect_success": rollouts.success_rate, "collect_episodes": rollouts.num_episodes,
               "collect_mean_length": float(rollouts.length.mean()), **info,
               "minutes": (time.monotonic() - t0) / 60}
        checkpoint(it, row)
        say(f"iteration {it}: collected {rollouts.num_episodes} imagined episodes ({rollouts.success_rate:.1%} "
            f"success), {info.get('updates', 0):.0f} updates; imagined success {res['success_rate']:.1%} (best "
            f"{log['best_imagined_success']:.1%} at iteration {log['best_iteration']})")
    suite.close()
    log["best_step_dir"] = str(run_dir / f"step_{log['best_iteration']:08d}")
    _write_atomic(run_dir / "refine.json", json.dumps(log, indent=2))
    return log
