"""``evaluate``: success rate of a policy on a task suite, with CIs, videos and a results folder.

Episodes run in lockstep batches of ``n_envs`` gymnasium vector envs (worker processes), each
(task, trial) from its fixed seed ``suite.trial_seed(task, trial, split)``; the policy runs
batched in this process through the same ``ActionSource`` / ``ChunkScheduler`` the robot uses.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from robopolicy.deploy.action_source import ActionSource, PolicySource
from robopolicy.deploy.noise import episode_noise_seed
from robopolicy.deploy.scheduler import ChunkScheduler, SyncScheduler, make_scheduler
from robopolicy.eval.report import plot_success, results_markdown, results_table, write_json, write_text
from robopolicy.eval.rollout import BatchResult, run_batch
from robopolicy.eval.stats import auroc, latency_stats, wilson_interval
from robopolicy.eval.video import write_mp4
from robopolicy.paths import slug
from robopolicy.types import IMAGE_PREFIX

# Env workers start from a fresh interpreter (forkserver), not a fork of this process: a fork
# would inherit any GL context or torch thread pool the parent already holds (black frames, hangs).
MP_CONTEXT = "forkserver"


def evaluate(
    policy_or_source: Any,
    suite_name: Any,
    episodes: int = 50,
    obs: str | None = None,
    n_envs: int = 2,
    scheduler: str | ChunkScheduler = "sync",
    video_dir: str | Path | None = None,
    n_videos: int = 3,
    seed_split: str = "eval",
    out_dir: str | Path | None = None,
    progress: bool = True,
    *,
    image_size: int | None = None,
    tasks: Sequence[str] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    scheduler_kwargs: dict[str, Any] | None = None,
    latency_steps: int = 0,
    vector: str = "async",
    perturb_step: int = 0,
    first_trial: int = 0,
    noise: str = "episode",
) -> dict[str, Any]:
    """Roll out ``episodes`` trials per task of a suite and report success.

    Args:
        policy_or_source: a ``Policy``, a checkpoint path (``load_policy``), or an ``ActionSource``.
        suite_name: a suite name for ``envs.make_suite`` (e.g. "pushblock"), or a suite object.
        episodes: trials per task (trial ``i`` always starts from the same initial state).
        first_trial: the trials are ``first_trial .. first_trial + episodes - 1``: a later block of
            held-out initial states, e.g. to pick an inference setting on states the main
            evaluation (trials from 0) never used.
        obs: "state" | "image"; None: "image" if the policy has cameras, else "state".
        n_envs: envs stepped in parallel (worker processes), also the policy's batch size.
        scheduler: "sync" | "ensemble" | "async" (fields in ``scheduler_kwargs``) or an instance.
        video_dir: where mp4s go; None: ``out_dir/videos`` if ``out_dir`` is given, else no videos.
        n_videos: episodes recorded (spread over tasks: trial 0 of each task first).
        seed_split: "eval" (held-out initial states) or "train".
        out_dir: results folder (eval_info.json, results.md, success.png); None writes nothing.
        progress: show a progress bar.
        image_size: camera resolution for obs="image"; None: the policy's camera height.
        tasks: a subset of the suite's tasks (default all).
        seed: seed of the policy's sampling noise; None draws one from torch's global RNG, so
            ``torch.manual_seed(s)`` before the call also makes it deterministic. The caller's
            RNG state is restored afterwards.
        noise: "episode": every episode draws its noise from its own stream, seeded by
            ``episode_noise_seed(seed, its reset seed)``, with one policy call per env: an
            episode's result does not depend on ``n_envs`` or its batch, and equals
            ``robopolicy-deploy clock=sim`` with the same seed. "batch": one batched policy call
            per chunk on torch's global RNG, reseeded per batch (fewer calls: faster with many
            envs on a GPU; results depend on ``n_envs``). A given ActionSource draws its own noise
            (reported as "source").
        device: where a policy runs (None: where it already is; "cpu" for a checkpoint path).
        scheduler_kwargs: fields of the named scheduler (e.g. ``{"threshold": 4}`` for async).
        latency_steps: simulated inference delay in control steps (see ``run_batch``); needs a
            scheduler that keeps executing while a chunk is in flight (async, ensemble).
        vector: "async" (worker processes started by forkserver: a script calling this needs the
            ``if __name__ == "__main__":`` guard) or "sync" (all envs in this process; faster for
            envs as cheap as state-only pushblock, where process start-up dominates).
        perturb_step: 0 = no perturbation; else each episode's object is displaced once, after
            this many env steps (``env.perturb()``: same trial, same displacement). Episode
            records get ``perturbed`` (the episode was still undecided then).

    A policy whose ``act`` puts ``info["uncertainty"]`` (float or (B,)) in its state gets
    ``uncertainty_mean`` / ``uncertainty_max`` per episode and, when both successes and failures
    occur, ``uncertainty["auroc_mean"/"auroc_max"]``: how well they predict failure.

    Videos show the first camera's observations (what the policy saw) for image suites, else
    ``env.render()``; when neither gives frames, videos are skipped and ``videos_note`` says why.

    Returns the content of ``eval_info.json`` plus ``table`` (markdown) and ``out_dir``.
    """
    if episodes < 1 or n_envs < 1 or n_videos < 0 or latency_steps < 0 or perturb_step < 0 or first_trial < 0:
        raise ValueError(f"evaluate: need episodes >= 1, n_envs >= 1, n_videos >= 0, latency_steps >= 0, "
                         f"perturb_step >= 0, first_trial >= 0; got {episodes}, {n_envs}, {n_videos}, "
                         f"{latency_steps}, {perturb_step}, {first_trial}")
    if seed_split not in ("train", "eval"):
        raise ValueError(f"evaluate: seed_split must be 'train' or 'eval', got {seed_split!r}")
    if vector not in ("async", "sync"):
        raise ValueError(f"evaluate: vector must be 'async' or 'sync', got {vector!r}")
    if noise not in ("episode", "batch"):
        raise ValueError(f"evaluate: noise must be 'episode' or 'batch', got {noise!r}")

    policy, source = _resolve_policy(policy_or_source, device)
    if obs is None:
        obs = "image" if policy is not None and policy.features.cameras else "state"
    if image_size is None and obs == "image" and policy is not None and policy.features.cameras:
        image_size = int(next(iter(policy.features.cameras.values()))[1])
    suite = _resolve_suite(suite_name, obs, image_size)
    task_list = list(suite.tasks) if tasks is None else list(tasks)
    for t in task_list:
        if t not in suite.tasks:
            raise ValueError(f"evaluate: suite {suite.name!r} has no task {t!r}; tasks: {suite.tasks}")
    dt = 1.0 / float(suite.fps)
    if policy is not None:
        if abs(float(policy.features.fps) - float(suite.fps)) > 1e-6 * float(suite.fps):
            raise ValueError(f"evaluate: the policy was trained at {policy.features.fps} fps but suite "
                             f"{suite.name!r} runs at {suite.fps} fps; its actions would be executed at the wrong rate")
        n_envs = min(n_envs, episodes)  # no idle workers for a short evaluation
        source = PolicySource(policy, device=None, n_envs=n_envs, dt=dt)
    else:
        if getattr(source, "n_envs", n_envs) != n_envs:
            raise ValueError(f"evaluate: the action source serves {source.n_envs} envs, n_envs={n_envs}")
        if abs(float(getattr(source, "dt", dt)) - dt) > 1e-6 * dt:
            raise ValueError(f"evaluate: the action source's control period {source.dt} s differs from suite "
                             f"{suite.name!r}'s {dt} s")
    assert source is not None

    if isinstance(scheduler, str):
        sched_name = scheduler
        sched = make_scheduler(scheduler, **(scheduler_kwargs or {}))
    else:
        if scheduler_kwargs:
            raise ValueError("evaluate: scheduler_kwargs only apply to a scheduler given by name")
        sched, sched_name = scheduler, type(scheduler).__name__
    if latency_steps and isinstance(sched, SyncScheduler):
        raise ValueError("evaluate: latency_steps > 0 needs the async or ensemble scheduler (sync would stall)")

    video_dir = Path(video_dir) if video_dir is not None else (Path(out_dir) / "videos" if out_dir else None)
    # Videos spread over tasks: trial 0 of every task, then trial 1, ...
    video_plan = {(task_list[i % len(task_list)], first_trial + i // len(task_list))
                  for i in range(n_videos if video_dir is not None else 0)
                  if i // len(task_list) < episodes}
    video_camera = IMAGE_PREFIX + suite.cameras[0] if getattr(suite, "cameras", None) else None

    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    noise_mode = noise if isinstance(source, PolicySource) else "source"
    was_training = policy.training if policy is not None else None
    acc = _Accumulator()
    t_start = time.perf_counter()
    bar = _progress(len(task_list) * episodes, f"eval {suite.name}", progress)
    # torch.manual_seed below reseeds every device: restore the caller's RNG streams afterwards.
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            for task_idx, task in enumerate(task_list):
                vec = _make_vector(suite, task, n_envs, vector)
                try:
                    for batch_idx, first in enumerate(range(0, episodes, n_envs)):
                        trials = list(range(first_trial + first, first_trial + min(first + n_envs, episodes)))
                        slots = trials + [trials[-1]] * (n_envs - len(trials))  # padding slots are discarded
                        seeds = [suite.trial_seed(task, t, seed_split) for t in slots]
                        torch.manual_seed(int(np.random.SeedSequence([seed, task_idx, batch_idx]).generate_state(1)[0]))
                        noise_seeds = ([episode_noise_seed(seed, s) for s in seeds] if noise_mode == "episode"
                                       else None)
                        res = run_batch(vec, source, sched, seeds, [suite.instruction(task)] * n_envs,
                                        int(suite.max_episode_steps(task)), dt,
                                        record=[i for i, t in enumerate(trials) if (task, t) in video_plan],
                                        frame_fn=_frame_fn(vec, video_camera, acc.video_notes),
                                        latency_steps=latency_steps, perturb_step=perturb_step,
                                        noise_seeds=noise_seeds)
                        acc.add(res, task, trials, seeds, n_envs, getattr(sched, "stats", {}), video_dir, suite.fps)
                        bar.update(len(trials))
                        bar.set_postfix(success=f"{acc.successes / len(acc.episodes):.0%}")
                finally:
                    vec.close()
    finally:
        bar.close()
        if policy is not None and was_training:
            policy.train()

    if acc.solved_at_reset:
        warnings.warn(f"evaluate: {acc.solved_at_reset} episodes of {suite.name!r} reported success already at reset")
    wall_s = time.perf_counter() - t_start
    result = _summarize(acc.episodes, task_list, suite, obs, sched_name, scheduler_kwargs, n_envs, seed_split, seed)
    result.update({
        "noise": noise_mode,
        "latency": {**latency_stats(acc.latencies), "batch_size": n_envs},
        "latency_steps": latency_steps,
        "perturb_step": perturb_step,
        "perturbed_episodes": sum(bool(e.get("perturbed")) for e in acc.episodes),
        "uncertainty": _uncertainty_summary(acc.episodes),
        # mean sampler steps per env and inference call, for policies that report them (adaptive EBT)
        "compute_steps_per_call": acc.compute[0] / acc.compute[1] if acc.compute[1] else None,
        "scheduler_stats": acc.sched_stats,
        "solved_at_reset": acc.solved_at_reset,
        "videos": [e["video"] for e in acc.episodes if e["video"]],
        "videos_note": "; ".join(dict.fromkeys(acc.video_notes)) or None,
        "wall_s": wall_s,
        "env_steps": acc.env_steps,
        "env_steps_per_s": acc.env_steps / wall_s if wall_s > 0 else None,
        "out_dir": str(out_dir) if out_dir is not None else None,
    })
    result["table"] = results_table(result)
    if out_dir is not None:
        out = Path(out_dir)
        result["files"] = {"eval_info": str(out / "eval_info.json"), "table": str(out / "results.md"),
                           "plot": str(out / "success.png")}
        plot_success(result, out / "success.png")
        write_json({k: v for k, v in result.items() if k != "table"}, out / "eval_info.json")
        write_text(out / "results.md", results_markdown(result))
    return result


class _Accumulator:
    """Per-episode rows and run-wide counters, filled batch by batch."""

    def __init__(self) -> None:
        self.episodes: list[dict[str, Any]] = []
        self.latencies: list[float] = []
        self.sched_stats: dict[str, int] = {}
        self.video_notes: list[str] = []
        self.env_steps = 0
        self.compute = [0.0, 0]  # sum and count of per-env compute steps an adaptive sampler reported
        self.successes = 0
        self.solved_at_reset = 0

    def add(self, res: BatchResult, task: str, trials: list[int], seeds: list[int], n_envs: int,
            sched_stats: dict[str, int], video_dir: Path | None, fps: float) -> None:
        self.latencies += res.latencies
        self.env_steps += res.steps * n_envs
        self.compute[0] += res.compute_steps[0]
        self.compute[1] += res.compute_steps[1]
        for k, v in sched_stats.items():  # a scheduler's counters restart with every batch
            self.sched_stats[k] = self.sched_stats.get(k, 0) + int(v)
        for i, trial in enumerate(trials):
            ep = {"task": task, "trial": trial, "seed": int(seeds[i]), "success": bool(res.success[i]),
                  "length": int(res.length[i]), "video": None}
            if res.perturbed is not None:
                ep["perturbed"] = bool(res.perturbed[i])
            for key in ("uncertainty_mean", "uncertainty_max"):
                values = getattr(res, key)
                if values is not None and np.isfinite(values[i]):
                    ep[key] = float(values[i])
            if res.frames.get(i):
                assert video_dir is not None
                name = f"{slug(task)}_trial{trial:03d}_{'success' if ep['success'] else 'fail'}.mp4"
                ep["video"] = str(write_mp4(video_dir / name, res.frames[i], fps))
            self.episodes.append(ep)
            self.successes += int(ep["success"])
            self.solved_at_reset += int(res.solved_at_reset is not None and bool(res.solved_at_reset[i]))


# --- pieces ---------------------------------------------------------------------------------------
def _resolve_policy(obj: Any, device: str | torch.device | None) -> tuple[Any, ActionSource | None]:
    """(policy, None) for a Policy or checkpoint path; (None, source) for an ActionSource."""
    if isinstance(obj, (str, Path)):
        from robopolicy.train.checkpoint import load_policy

        return load_policy(obj, device=device or "cpu"), None
    if isinstance(obj, torch.nn.Module) and hasattr(obj, "act"):
        if device is not None:
            obj.to(device)
        return obj, None
    if isinstance(obj, ActionSource):
        return None, obj
    raise TypeError(f"evaluate: expected a Policy, a checkpoint path or an ActionSource, got {type(obj).__name__}")


def _resolve_suite(name: Any, obs: str, image_size: int | None) -> Any:
    if not isinstance(name, str):
        for attr in ("tasks", "fps", "env_fn", "trial_seed", "instruction", "max_episode_steps"):
            if not hasattr(name, attr):
                raise TypeError(f"evaluate: a suite object needs .{attr}; got {type(name).__name__}")
        return name
    from envs import make_suite

    kwargs = {"image_size": int(image_size)} if obs == "image" and image_size is not None else {}
    return make_suite(name, obs=obs, **kwargs)


def _make_vector(suite: Any, task: str, n_envs: int, vector: str) -> VectorEnv:
    if hasattr(suite, "make_vector"):  # a suite that batches its own envs (robopolicy.world_model)
        return suite.make_vector(task, n_envs)
    fns = [suite.env_fn(task) for _ in range(n_envs)]
    if vector == "sync" or n_envs == 1:
        return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.NEXT_STEP)
    return AsyncVectorEnv(fns, context=MP_CONTEXT, autoreset_mode=AutoresetMode.NEXT_STEP)


def _frame_fn(vec: VectorEnv, camera_key: str | None, notes: list[str]):
    """Frames for videos: the first camera's observation, or ``env.render()`` for state suites."""
    if camera_key is not None:
        return lambda obs: obs[camera_key] if camera_key in obs else None

    def render(_obs):
        try:
            frames = vec.call("render")
        except Exception as e:  # an env without offscreen rendering: skip videos, say why
            notes.append(f"videos skipped: env.render() failed ({type(e).__name__}: {e})")
            return None
        if any(f is None for f in frames):
            notes.append("videos skipped: env.render() returned None (render_mode is not 'rgb_array')")
            return None
        return frames

    return render


def _summarize(eps: list[dict[str, Any]], task_list: list[str], suite: Any, obs: str, sched_name: str,
               sched_kwargs: dict | None, n_envs: int, split: str, seed: int) -> dict[str, Any]:
    per_task = {}
    for task in task_list:
        rows = [e for e in eps if e["task"] == task]
        k, n = sum(e["success"] for e in rows), len(rows)
        per_task[task] = {
            "instruction": suite.instruction(task),
            "success_rate": k / n,
            "ci95": list(wilson_interval(k, n)),
            "successes": k,
            "episodes": n,
            "mean_length": float(np.mean([e["length"] for e in rows])),
            "max_episode_steps": int(suite.max_episode_steps(task)),
        }
    k, n = sum(e["success"] for e in eps), len(eps)
    return {
        "suite": getattr(suite, "name", type(suite).__name__),
        "obs": obs,
        "scheduler": sched_name,
        "scheduler_kwargs": dict(sched_kwargs or {}),
        "n_envs": n_envs,
        "seed_split": split,
        "seed": seed,
        "episodes": n,
        # Equal trials per task, so the task average equals the pooled rate the CI is for.
        "success_rate": float(np.mean([r["success_rate"] for r in per_task.values()])),
        "ci95": list(wilson_interval(k, n)),
        "successes": k,
        "mean_length": float(np.mean([e["length"] for e in eps])),
        "tasks": per_task,
        "per_episode": eps,
    }


def _uncertainty_summary(eps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """AUROC of the per-episode uncertainty for predicting failure (None: no policy uncertainty;
    AUROCs None when the episodes are all successes or all failures)."""
    rows = [e for e in eps if "uncertainty_mean" in e]
    if not rows:
        return None
    failed = [not e["success"] for e in rows]
    both = 0 < sum(failed) < len(rows)
    return {
        "episodes": len(rows),
        "auroc_mean": auroc([e["uncertainty_mean"] for e in rows], failed) if both else None,
        "auroc_max": auroc([e["uncertainty_max"] for e in rows], failed) if both else None,
    }


def _progress(total: int, desc: str, enabled: bool):
    from robopolicy.progress import progress_bar

    return progress_bar(total=total, desc=desc, disable=not enabled, leave=False)
