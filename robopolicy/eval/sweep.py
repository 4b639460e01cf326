"""One trained checkpoint evaluated under several inference settings (eval-time policy overrides):
success against decoding rounds, denoising steps per control step, ... The same weights are used
for every row, so the rows differ only by the setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robopolicy.train.checkpoint import load_train_config, resolve_checkpoint


def checkpoint_meta(checkpoint: str | Path, family: str) -> tuple[Path, dict[str, Any]]:
    """(step folder, meta.json) of a checkpoint, which must hold a ``family`` policy. The meta
    gains ``env``: the suite the run trained on (from its config.yaml), which names the tables."""
    step_dir = resolve_checkpoint(checkpoint)
    meta = json.loads((step_dir / "meta.json").read_text())
    if meta["policy"] != family:
        raise SystemExit(f"{step_dir} holds a {meta['policy']!r} policy, not {family}")
    meta["env"] = load_train_config(step_dir).get("env")
    if not meta["env"]:
        raise SystemExit(f"{step_dir} has no config.yaml naming its env: the sweep cannot tell which suite to run")
    return step_dir, meta


def sweep(step_dir: Path, settings: list[tuple[str, dict[str, Any], Any]], episodes: int, n_envs: int = 2,
          seed: int = 0, perturb_step: int = 0, first_trial: int = 0, reuse: bool = False) -> list[dict[str, Any]]:
    """Evaluate ``step_dir`` once per (label, policy overrides, cost) setting; each row is
    ``{"label", "cost", "res"}`` with ``res`` the evaluator's result dict. ``first_trial`` > 0
    evaluates a later block of held-out initial states (one the main evaluation did not use).
    ``reuse``: a setting whose results folder already holds an evaluation of the same episodes
    (``eval_info.json``, e.g. from a sweep run in another process) is read instead of run again."""
    from robopolicy.eval.job import EvalJobConfig, eval_tag, run_eval
    from robopolicy.paths import results_dir

    env = load_train_config(step_dir).get("env")
    rows = []
    for label, overrides, cost in settings:
        cfg = EvalJobConfig(checkpoint=str(step_dir), episodes=episodes, n_envs=n_envs, videos=0, seed=seed,
                            perturb_step=perturb_step, first_trial=first_trial, policy_overrides=overrides)
        # each setting lands in its own default folder, <step>/eval/<suite>_<overrides>[_from<N>] (eval_tag)
        done = results_dir(step_dir, "eval", env, eval_tag(cfg)) / "eval_info.json"
        res = json.loads(done.read_text()) if reuse and done.is_file() else None
        if res is not None and any(t["episodes"] != episodes for t in res.get("tasks", {}).values()):
            res = None  # another episode count: not the same measurement
        if res is None:
            res = run_eval(cfg, progress=False)
        rows.append({"label": label, "res": res, "cost": cost})
        print(f"{label}: success {res['success_rate']:.1%} over {res['episodes']} episodes", flush=True)
    return rows


def sweep_table(rows: list[dict[str, Any]], setting: str, cost: str) -> str:
    """Markdown: one row per setting, with per-task columns when the suite has several tasks. The
    policy-call latency is the evaluator's median over the run (a batch of ``n_envs`` observations)."""
    tasks = list(rows[0]["res"].get("tasks", {}))
    multi = len(tasks) > 1
    head = (f"| {setting} | {cost} | success | 95% CI | episodes | mean length | policy call p50 (ms) |"
            + "".join(f" {t} |" for t in tasks if multi))
    lines = [head, "|" + "---|" * (7 + (len(tasks) if multi else 0))]
    for r in rows:
        res = r["res"]
        p50 = (res.get("latency") or {}).get("p50_s")
        used = res.get("compute_steps_per_call")  # what an adaptive sampler really spent
        cost = r["cost"] if used is None else f"{r['cost']} (mean {used:.2f})"
        line = (f"| {r['label']} | {cost} | {res['success_rate']:.0%} | {res['ci95'][0]:.0%}-{res['ci95'][1]:.0%} "
                f"| {res['episodes']} | {res['mean_length']:.0f} | {'' if p50 is None else f'{1e3 * p50:.1f}'} |")
        if multi:
            line += "".join(f" {res['tasks'][t]['success_rate']:.0%} |" for t in tasks)
        lines.append(line)
    return "\n".join(lines)
