"""Success-rate benchmark: train a policy family on Meta-World tasks (or any suite) with a fixed
data and time budget, evaluate each on 50 held-out initial states, and write the table into
docs/benchmarks.md.

    python scripts/bench_success.py --policy diffusion --obs state \
        --tasks reach-v3 push-v3 pick-place-v3 drawer-open-v3 button-press-topdown-v3 \
        --steps 8000 --minutes 20 --threads 1

Each task's result is kept in results/<policy>_<obs>/<task>.json, so several invocations (e.g.
two in parallel, one thread each) fill one table; the table lists every task found there. A
multi-task suite (e.g. ``--tasks metaworld/mt10 --obs image image_size=64``: one policy for all
its tasks) keeps each task's success from the evaluation summary and fills one table row per task
plus the suite's average.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robopolicy.benchmarks import provenance, write_section

ROOT = Path(__file__).resolve().parents[1]


def _train_cfg(args, task: str):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from robopolicy.cli.common import slug
    from robopolicy.cli.configstore import CONFIG_DIR, register_configs

    register_configs()
    from envs import list_suites

    env = task if task in list_suites() else f"metaworld/mt1/{task}"
    overrides = [f"policy={args.policy}", f"env={env}", f"obs={args.obs}", f"episodes={args.episodes}",
                 f"steps={args.steps}", f"eval.episodes={args.eval_episodes}", "eval.videos=1",
                 f"run_name=bench_{args.policy}_{args.obs}_{slug(task)}", f"save_every={args.steps}",
                 "log_every=200", *args.overrides]
    if args.minutes:
        overrides.append(f"max_minutes={args.minutes}")
    if args.threads:
        overrides.append(f"num_threads={args.threads}")
    if args.resume:
        overrides.append("resume=true")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return OmegaConf.to_object(cfg), overrides


def _reevaluate(path: Path, args) -> None:
    """Evaluate the checkpoint behind one saved result again with eval-time policy overrides and
    update the row; the earlier success is kept in ``reevaluations``."""
    import yaml

    from robopolicy.eval.job import EvalJobConfig, run_eval

    if not path.exists():
        raise SystemExit(f"{path} does not exist: there is no trained result to re-evaluate")
    row = json.loads(path.read_text())
    overrides = {}
    for item in args.reeval_with:
        if "=" not in item:
            raise SystemExit(f"--reeval-with takes FIELD=VALUE pairs, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k] = yaml.safe_load(v)
    res = run_eval(EvalJobConfig(checkpoint=row["run_dir"], episodes=args.eval_episodes, videos=0,
                                 output=str(Path(row["run_dir"]) / ("eval_reeval_" + "_".join(args.reeval_with))),
                                 policy_overrides=overrides))
    previous = row["success_rate"]
    for k in ("success_rate", "ci95", "episodes", "mean_length"):
        row[k] = res[k]
    if len(res.get("tasks", {})) > 1:
        row["tasks"] = {t: {k: v[k] for k in ("success_rate", "ci95", "episodes", "mean_length")}
                        for t, v in res["tasks"].items()}
    row.setdefault("reevaluations", []).append(
        {"policy_overrides": overrides, "previous_success": previous, "command": provenance()})
    path.write_text(json.dumps(row, indent=2))
    print(f"{row['task']}: success {previous:.0%} -> {row['success_rate']:.0%} with {overrides}")


def table(rows: list[dict]) -> list[str]:
    """Markdown table lines: one row per single-task result; for a multi-task suite one row per
    task (from the evaluation summary) and then the suite's average; a mean over results."""
    lines = ["| task | demos | success | 95% CI | eval episodes | mean length | train steps | train minutes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        demos = next((o.split("=", 1)[1] for o in r["overrides"] if o.startswith("episodes=")), "?")
        for t, tr in r.get("tasks", {}).items():
            lines.append(f"| {r['task']}: {t} | {demos} | {tr['success_rate']:.0%} | {tr['ci95'][0]:.0%}-{tr['ci95'][1]:.0%} | "
                         f"{tr['episodes']} | {tr['mean_length']:.0f} | | |")
        name = f"{r['task']} (average of {len(r['tasks'])} tasks)" if r.get("tasks") else r["task"]
        lines.append(f"| {name} | {demos} | {r['success_rate']:.0%} | {r['ci95'][0]:.0%}-{r['ci95'][1]:.0%} | "
                     f"{r['episodes']} | {r['mean_length']:.0f} | {r['train_steps']} | {r['train_minutes']:.1f} |")
    if rows:
        mean = sum(r["success_rate"] for r in rows) / len(rows)
        lines.append(f"| **mean** | | **{mean:.0%}** | | | | | |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default="diffusion")
    ap.add_argument("--obs", default="state")
    ap.add_argument("--tasks", nargs="*", default=[], help="Meta-World task names or full suite names")
    ap.add_argument("--table-only", action="store_true", help="only rewrite the table from results/")
    ap.add_argument("--episodes", type=int, default=50, help="demonstrations per task")
    ap.add_argument("--eval-episodes", type=int, default=50)
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--minutes", type=float, default=None, help="training time budget per task")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--reeval-with", nargs="+", default=None, metavar="FIELD=VALUE",
                    help="no training: re-evaluate each task's saved checkpoint (same episodes and seed) with "
                         "these eval-time policy overrides, e.g. after a family's default inference changed; "
                         "the row keeps its training columns and records the re-evaluation")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. policy.n_action_steps=4")
    args = ap.parse_args()

    from robopolicy.cli.common import slug
    from robopolicy.train.run import run_training

    out_dir = ROOT / "results" / f"{args.policy}_{args.obs}"
    out_dir.mkdir(parents=True, exist_ok=True)
    for task in [] if args.table_only or not args.reeval_with else args.tasks:
        _reevaluate(out_dir / f"{slug(task)}.json", args)
    for task in [] if args.table_only or args.reeval_with else args.tasks:
        cfg, overrides = _train_cfg(args, task)
        res = run_training(cfg, args.policy)
        row = {k: res[k] for k in ("success_rate", "ci95", "episodes", "mean_length", "train_steps",
                                   "train_minutes", "run_dir")}
        if len(res.get("tasks", {})) > 1:  # a multi-task suite: keep every task's result
            row["tasks"] = {t: {k: v[k] for k in ("success_rate", "ci95", "episodes", "mean_length")}
                            for t, v in res["tasks"].items()}
        row.update(task=task, overrides=overrides, command=provenance())
        (out_dir / f"{slug(task)}.json").write_text(json.dumps(row, indent=2))
        print(f"{task}: success {row['success_rate']:.0%} after {row['train_steps']} steps")
    if args.no_write:
        return
    rows = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json"))]
    lines = table(rows)
    runs = "\n".join(f"- {r['task']}: " + r["command"].strip().replace("  \n", "; ").replace("\n", " ")
                      + "".join(f"; re-evaluated with {', '.join(f'{k}={v}' for k, v in e['policy_overrides'].items())}"
                                f" (was {e['previous_success']:.0%}): " + e["command"].strip().replace("  \n", "; ")
                                .replace("\n", " ") for e in r.get("reevaluations", []))
                      for r in rows)
    body = ("Expert demonstrations per task (column demos; recorded by the scripted experts on train "
            f"initial states), evaluation on {args.eval_episodes} held-out initial states per task, EMA "
            f"weights, each policy's default inference (Diffusion Policy: DDIM-10 chunks of 8 actions; "
            f"SDP: its streaming buffer, one denoising step and one action per control step; ddvla: 12 "
            f"parallel decoding rounds with remasking, chunks of 8 actions; EBT-Policy: adaptive energy "
            f"descent, until converged (last step moved the chunk <= 0.01 RMS), at most 4 steps, up to 8 while "
            f"the energy stays above the calibrated threshold, chunks of 8 actions). Image runs see the suite's first camera "
            f"(Meta-World: corner, 84x84 unless image_size is in the command) plus the state. Train minutes are "
            f"wall-clock; a run with --threads 1 had one of the 2 cores while another benchmark ran "
            f"on the other.\n\n" + "\n".join(lines)
            + "\n\nEach task's run (command, machine, date):\n\n" + runs + "\n")
    write_section(f"Success: {args.policy}, {args.obs} observations", body)


if __name__ == "__main__":
    main()
