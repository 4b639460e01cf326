"""RL refinement inside a world model, judged in the true simulator.

    python scripts/bench_refine.py \
        --checkpoint checkpoints/bench_world_model/push-v3/policies/diffusion_step01000 \
        --world-model checkpoints/bench_world_model/push-v3/wm/diffusion --method awr --iterations 8

1. The imitation checkpoint in the true simulator: ``--episodes`` held-out trials (eval split, 0..N-1).
2. ``robopolicy.rl.run_refine`` inside the world model (imagined episodes only; the real suite is
   reset for initial observations of train trials, never stepped), the in-model selection on
   held-out trials 100.. (never the trials of step 1).
3. Every iteration's checkpoint in the true simulator on the same trials as step 1: the imagined
   success the refiner selected on next to the true success, as a table and a plot
   (docs/refine_<task>_<method>.png).
Writes the section "RL refinement: <task>, <method>" of docs/benchmarks.md (unless --no-doc).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def true_success(step_dir: Path, env: str, episodes: int, cache: Path) -> dict:
    from robopolicy.eval import evaluate
    from robopolicy.train.checkpoint import load_policy

    if cache.is_file():
        row = json.loads(cache.read_text())
        if row.get("episodes") == episodes:
            return row
    t0 = time.monotonic()
    res = evaluate(load_policy(step_dir), env, episodes=episodes, obs="state", n_envs=2, progress=False, seed=0)
    row = {"success_rate": res["success_rate"], "ci95": res["ci95"], "episodes": episodes,
           "mean_length": res["mean_length"], "seconds": time.monotonic() - t0}
    cache.write_text(json.dumps(row, indent=2))
    return row


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [r["iteration"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(it, [r["imagined"] for r in rows], "o-", label="imagined (world model, trials 100..)")
    ax.plot(it, [r["true"] for r in rows], "s-", label="true simulator (held-out trials)")
    ax.set_xlabel("refinement iteration")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="imitation policy (run or step folder; state policy)")
    p.add_argument("--world-model", required=True, help="world-model run (robopolicy-train-wm)")
    p.add_argument("--method", default="awr", choices=["awr", "filtered", "dppo"])
    p.add_argument("--iterations", type=int, default=8)
    p.add_argument("--episodes", type=int, default=50, help="true-simulator episodes per evaluation")
    p.add_argument("--work", type=Path, default=None, help="refined runs go here (default: beside the checkpoint)")
    p.add_argument("--no-doc", action="store_true")
    p.add_argument("overrides", nargs="*", help="RefineConfig fields, e.g. lr=3e-5 beta=0.5")
    a = p.parse_args()

    import torch

    from robopolicy.benchmarks import parse_overrides, provenance, write_section
    from robopolicy.config_utils import from_dict
    from robopolicy.rl.config import RefineConfig
    from robopolicy.rl.refine import run_refine
    from robopolicy.train.checkpoint import load_train_config, resolve_checkpoint

    torch.set_num_threads(1)
    step_dir = resolve_checkpoint(a.checkpoint)
    env = load_train_config(step_dir)["env"]
    task = env.split("/")[-1]
    work = a.work or step_dir.parent
    extra = parse_overrides(a.overrides, "overrides")
    cfg = from_dict(RefineConfig, {"checkpoint": str(step_dir), "world_model": a.world_model, "method": a.method,
                                   "iterations": a.iterations, "num_threads": 1, "device": "cpu",
                                   "output_dir": str(work), "run_name": f"{step_dir.name}_refined_{a.method}",
                                   **extra})
    run_dir = Path(work) / cfg.run_name
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    # cached beside the refined run: the imitation checkpoint's folder is only read
    before = true_success(step_dir, env, a.episodes, run_dir.parent / f"{run_dir.name}.imitation_true.json")
    print(f"imitation, true simulator: {before['success_rate']:.0%}", flush=True)
    log_path = run_dir / "refine.json"
    t0 = time.monotonic()
    log = json.loads(log_path.read_text()) if log_path.is_file() else run_refine(cfg, progress=True)
    refine_min = (time.monotonic() - t0) / 60
    rows = []
    for row in log["iterations"]:
        d = run_dir / f"step_{row['iteration']:08d}"
        t = true_success(d, env, a.episodes, d / "bench_refine_true.json")
        rows.append({"iteration": row["iteration"], "imagined": row["imagined_success"], "true": t["success_rate"],
                     "true_ci": t["ci95"], "collect": row.get("collect_success")})
        print(f"iteration {row['iteration']}: imagined {row['imagined_success']:.0%}, true {t['success_rate']:.0%}",
              flush=True)
    best = log["best_iteration"]
    best_row = next(r for r in rows if r["iteration"] == best)
    png = ROOT / "docs" / f"refine_{task}_{a.method}.png"
    if not a.no_doc:
        plot(rows, png, f"{task}, {a.method}: imagined vs true success")
    c = cfg
    body = [f"Imitation checkpoint `{step_dir}` (Diffusion Policy, state) refined with `{a.method}` inside the world "
            f"model `{a.world_model}` for {a.iterations} iterations ({c.states_per_iter} train initial states x "
            f"{c.rollouts_per_state} imagined episodes per iteration, {c.updates_per_iter} updates of batch "
            f"{c.batch_size} at lr {c.lr:g}, bc_weight {c.bc_weight:g}; in-model selection on {c.eval_episodes} "
            f"held-out trials from {c.eval_first_trial}). True-simulator steps used by refinement: 0 (the real suite "
            f"is only reset, for the imagined episodes' first observations). True success: {a.episodes} held-out "
            f"trials 0-{a.episodes - 1}, the same for every row." + (f" Refinement took {refine_min:.1f} min."
                                                                     if refine_min > 0.1 else ""), "",
            "| iteration | imagined success (selection) | true success | 95% CI | imagined success of collected episodes |",
            "|---|---|---|---|---|"]
    for r in rows:
        mark = " (imitation)" if r["iteration"] == 0 else (" (kept: best imagined)" if r["iteration"] == best else "")
        collected = "" if r["collect"] is None else f"{r['collect']:.0%}"
        body.append(f"| {r['iteration']}{mark} | {r['imagined']:.0%} | {r['true']:.0%} | "
                    f"{r['true_ci'][0]:.0%}-{r['true_ci'][1]:.0%} | {collected} |")
    body += ["", f"Kept checkpoint (iteration {best}): true success {before['success_rate']:.0%} -> "
             f"{best_row['true']:.0%}." + (f" Plot: ![imagined vs true]({png.name})" if not a.no_doc else ""), ""]
    text = "\n".join(body) + "\n" + provenance()
    print(text)
    if not a.no_doc:
        print(f"wrote {write_section(f'RL refinement: {task}, {a.method}', text)}")


if __name__ == "__main__":
    main()
