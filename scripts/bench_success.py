"""Success-rate benchmark: train a policy family on Meta-World tasks (or any suite) with a fixed
data and time budget, evaluate each on 50 held-out initial states, and write the table into
docs/benchmarks.md.

    python scripts/bench_success.py --policy diffusion --obs state \
        --tasks reach-v3 push-v3 pick-place-v3 drawer-open-v3 button-press-topdown-v3 \
        --steps 8000 --minutes 20 --threads 1

Each task's result is kept in results/<policy>_<obs>/<task>.json, so several invocations (e.g.
two in parallel, one thread each) fill one table; the table lists every task found there. A
multi-task suite (e.g. ``--tasks metaworld/mt10 --obs image image_size=64``: one policy for all
its tasks) is its own benchmark: results/<policy>_<obs>_<suite>/, its own section with one row per
task (from the evaluation summary) plus the suite's average, and with ``--compare OTHER`` a
side-by-side section against another family's result on the same suite:

    python scripts/bench_success.py --policy ddvla --obs image --tasks metaworld/mt10 --table-only \
        --compare diffusion

For single tasks, ``--compare OTHER`` writes one section with the named tasks side by side (each
family's own runs, from its results/<policy>_<obs>/ folder) and the average over them:

    python scripts/bench_success.py --policy ebt --obs state --table-only --compare diffusion \
        --tasks reach-v3 push-v3 pick-place-v3 drawer-open-v3 button-press-topdown-v3
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from robopolicy.benchmarks import parse_overrides, provenance, write_section

ROOT = Path(__file__).resolve().parents[1]


def _train_cfg(args, task: str):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from robopolicy.paths import slug
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
    from robopolicy.eval.job import EvalJobConfig, run_eval

    if not path.exists():
        raise SystemExit(f"{path} does not exist: there is no trained result to re-evaluate")
    row = json.loads(path.read_text())
    overrides = parse_overrides(args.reeval_with, "--reeval-with")
    # default folder: <step>/eval/<suite>_<overrides> (robopolicy.eval.job.eval_tag)
    res = run_eval(EvalJobConfig(checkpoint=row["run_dir"], episodes=args.eval_episodes, videos=0,
                                 policy_overrides=overrides))
    previous = row["success_rate"]
    for k in ("success_rate", "ci95", "episodes", "mean_length"):
        row[k] = res[k]
    if row.get("inference_config"):  # what the new numbers were produced with
        from robopolicy.benchmarks import inference_config

        row["inference_config"] = {**row["inference_config"], **inference_config(row_policy(row), {}, overrides)}
    if len(res.get("tasks", {})) > 1:
        row["tasks"] = {t: {k: v[k] for k in ("success_rate", "ci95", "episodes", "mean_length")}
                        for t, v in res["tasks"].items()}
    row.setdefault("reevaluations", []).append(
        {"policy_overrides": overrides, "previous_success": previous, "command": provenance()})
    path.write_text(json.dumps(row, indent=2))
    print(f"{row['task']}: success {previous:.0%} -> {row['success_rate']:.0%} with {overrides}")


def table(rows: list[dict]) -> list[str]:
    """Markdown table lines: one row per single-task result; for a multi-task suite one row per
    task (from the evaluation summary) and then the suite's average; with several results, their
    plain mean, labelled with the results it averages. Every result row says how its actions were
    produced (column inference: ``row_inference``)."""
    from robopolicy.benchmarks import inference_text

    lines = ["| task | demos | success | 95% CI | eval episodes | mean length | train steps | train minutes | inference |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        demos = next((o.split("=", 1)[1] for o in r["overrides"] if o.startswith("episodes=")), "?")
        for t, tr in r.get("tasks", {}).items():
            lines.append(f"| {r['task']}: {t} | {demos} | {tr['success_rate']:.0%} | {tr['ci95'][0]:.0%}-{tr['ci95'][1]:.0%} | "
                         f"{tr['episodes']} | {tr['mean_length']:.0f} | | | |")
        name = f"{r['task']} (average of {len(r['tasks'])} tasks)" if r.get("tasks") else r["task"]
        lines.append(f"| {name} | {demos} | {r['success_rate']:.0%} | {r['ci95'][0]:.0%}-{r['ci95'][1]:.0%} | "
                     f"{r['episodes']} | {r['mean_length']:.0f} | {r['train_steps']} | {r['train_minutes']:.1f} | "
                     f"{inference_text(row_policy(r), row_inference(r))} |")
    if len(rows) > 1:
        mean = sum(r["success_rate"] for r in rows) / len(rows)
        lines.append(f"| **mean of {len(rows)} results** ({', '.join(r['task'] for r in rows)}) | | **{mean:.0%}** "
                     f"| | | | | | |")
    return lines


def row_policy(row: dict) -> str:
    """The family a saved result trained (its ``policy=`` override)."""
    return next((o.split("=", 1)[1] for o in row["overrides"] if o.startswith("policy=")), "?")


def row_inference(row: dict) -> dict | None:
    """How a saved result's actions were produced: the ``inference_config`` it recorded (runs since
    it was added, and the older rows, backfilled with their source named in
    ``inference_config_source``), else the run's checkpoint config when that checkpoint is the one
    the row was trained to, with any re-evaluation's overrides; None when neither is there."""
    if row.get("inference_config"):
        return row["inference_config"]
    from robopolicy.benchmarks import inference_config
    from robopolicy.train.checkpoint import resolve_checkpoint

    try:
        step_dir = resolve_checkpoint(ROOT / row["run_dir"])
        meta = json.loads((step_dir / "meta.json").read_text())
    except (FileNotFoundError, KeyError, ValueError):
        return None
    if meta.get("step") != row.get("train_steps"):
        return None  # the folder holds another run now
    overrides = {}
    for e in row.get("reevaluations", []):
        overrides.update(e["policy_overrides"])
    return inference_config(row_policy(row), meta.get("policy_config") or {}, overrides) or None


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
    ap.add_argument("--compare", default=None, metavar="POLICY",
                    help="also write a side-by-side section against this family's results (a multi-task suite, "
                         "or the single tasks named)")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. policy.n_action_steps=4")
    args = ap.parse_args()

    from robopolicy.paths import slug
    from robopolicy.train.run import run_training

    for task in [] if args.table_only or not args.reeval_with else args.tasks:
        _reevaluate(_results_dir(args.policy, args.obs, task) / f"{slug(task)}.json", args)
    for task in [] if args.table_only or args.reeval_with else args.tasks:
        out_dir = _results_dir(args.policy, args.obs, task)
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg, overrides = _train_cfg(args, task)
        res = run_training(cfg, args.policy)
        row = {k: res[k] for k in ("success_rate", "ci95", "episodes", "mean_length", "train_steps",
                                   "train_minutes", "run_dir")}
        if len(res.get("tasks", {})) > 1:  # a multi-task suite: keep every task's result
            row["tasks"] = {t: {k: v[k] for k in ("success_rate", "ci95", "episodes", "mean_length")}
                            for t, v in res["tasks"].items()}
        row.update(task=task, overrides=overrides, command=provenance())
        row["inference_config"] = _run_inference(args.policy, res["run_dir"])
        (out_dir / f"{slug(task)}.json").write_text(json.dumps(row, indent=2))
        print(f"{task}: success {row['success_rate']:.0%} after {row['train_steps']} steps")
    if args.no_write:
        return
    suites = [t for t in args.tasks if _suite(t)]
    if not suites or len(suites) < len(args.tasks):
        _write_table(args, None)
        if args.compare:
            _write_task_comparison(args, [t for t in args.tasks if not _suite(t)])
    for suite in suites:
        _write_table(args, suite)
        if args.compare:
            _write_comparison(args, suite)


def _run_inference(policy: str, run_dir: str) -> dict:
    """The inference settings saved with a run's newest checkpoint (what its evaluation used)."""
    from robopolicy.benchmarks import inference_config
    from robopolicy.train.checkpoint import resolve_checkpoint

    meta = json.loads((resolve_checkpoint(run_dir) / "meta.json").read_text())
    return inference_config(policy, meta.get("policy_config") or {})


@functools.lru_cache(maxsize=None)
def _suite(task: str) -> str | None:
    """``task`` when it names a multi-task suite (one policy for all its tasks), else None."""
    from envs import list_suites, make_suite

    if task not in list_suites() or task.startswith("metaworld/mt1/"):
        return None
    return task if len(make_suite(task).tasks) > 1 else None


def _results_dir(policy: str, obs: str, task: str) -> Path:
    from robopolicy.paths import slug

    suite = _suite(task)
    return ROOT / "results" / (f"{policy}_{obs}" + (f"_{slug(suite)}" if suite else ""))


def _write_table(args, suite: str | None) -> None:
    """Rewrite the section of single-task results (suite None) or of one multi-task suite."""
    from robopolicy.paths import slug

    out_dir = ROOT / "results" / (f"{args.policy}_{args.obs}" + (f"_{slug(suite)}" if suite else ""))
    rows = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json"))]
    if not rows:
        raise SystemExit(f"no results in {out_dir}: run the benchmark first")
    lines = table(rows)
    runs = "\n".join(f"- {r['task']}: " + r["command"].strip().replace("  \n", "; ").replace("\n", " ")
                      + "".join(f"; re-evaluated with {', '.join(f'{k}={v}' for k, v in e['policy_overrides'].items())}"
                                f" (was {e['previous_success']:.0%}): " + e["command"].strip().replace("  \n", "; ")
                                .replace("\n", " ") for e in r.get("reevaluations", []))
                      + (f"\n  - Note: {r['note']}" if r.get("note") else "")  # a known caveat, kept with the result
                      for r in rows)
    body = ("Expert demonstrations per task (column demos; recorded by the scripted "
            "experts on train initial states), evaluation on held-out initial states (column eval episodes, per "
            "task), EMA weights. Column inference: how each row's actions were produced, from the settings saved "
            "with that row's result (its run's checkpoint config, and any re-evaluation's overrides). Image runs see "
            "the suite's first camera (Meta-World: corner, 84x84 unless image_size is in the command) plus the "
            "state. Train minutes are wall-clock; a run with --threads 1 had one of the 2 cores while another "
            "benchmark ran on the other.\n\n" + "\n".join(lines)
            + "\n\nEach task's run (command, machine, date):\n\n" + runs + "\n")
    write_section(f"Success: {args.policy}, {args.obs} observations" + (f", {suite}" if suite else ""), body)


def _write_comparison(args, suite: str) -> None:
    """Side by side, per task and on average, this family against ``--compare`` on one suite."""
    from robopolicy.paths import slug

    res = {}
    for policy in (args.policy, args.compare):
        path = ROOT / "results" / f"{policy}_{args.obs}_{slug(suite)}" / f"{slug(suite)}.json"
        if not path.exists():
            raise SystemExit(f"--compare: {path} is missing: run the {policy} benchmark on {suite} first")
        res[policy] = json.loads(path.read_text())
    a, b = res[args.policy], res[args.compare]
    lines = [f"| task | {args.policy} | {args.compare} | difference |", "|---|---|---|---|"]
    for t in a["tasks"]:
        ra, rb = a["tasks"][t]["success_rate"], b["tasks"].get(t, {}).get("success_rate")
        lines.append(f"| {t} | {ra:.0%} | {'' if rb is None else f'{rb:.0%}'} | "
                     f"{'' if rb is None else f'{round(100 * (ra - rb)) + 0:+d} pts'} |")
    lines.append(f"| **average** | **{a['success_rate']:.0%}** ({a['ci95'][0]:.0%}-{a['ci95'][1]:.0%}) | "
                 f"**{b['success_rate']:.0%}** ({b['ci95'][0]:.0%}-{b['ci95'][1]:.0%}) | "
                 f"{round(100 * (a['success_rate'] - b['success_rate'])) + 0:+d} pts |")
    budget = "; ".join(f"{p}: {r['train_steps']} steps in {r['train_minutes']:.0f} min" for p, r in res.items())
    notes = "".join(f"\n\nNote on {p}: {r['note']}" for p, r in res.items() if r.get("note"))
    body = (f"One policy per family for every task of {suite}, trained on the same demonstrations with the same "
            f"wall-clock budget ({budget}), each evaluated on the same held-out initial states "
            f"({a['episodes'] // max(len(a['tasks']), 1)} per task); each family's own section lists its exact "
            "command. Averages with their 95% Wilson intervals.\n\n" + "\n".join(lines) + notes + "\n\n"
            + provenance())
    write_section(f"Success: {args.policy} vs {args.compare}, {suite} ({args.obs} observations)", body)


def task_comparison(a: dict[str, dict], b: dict[str, dict], names: tuple[str, str]) -> list[str]:
    """Markdown rows: per task both results (each dict: task -> saved row) and the average over tasks."""
    lines = [f"| task | {names[0]} | {names[1]} | difference | train steps ({names[0]} / {names[1]}) |",
             "|---|---|---|---|---|"]
    for t in a:
        ra, rb = a[t], b[t]
        lines.append(f"| {t} | {ra['success_rate']:.0%} ({ra['ci95'][0]:.0%}-{ra['ci95'][1]:.0%}) | "
                     f"{rb['success_rate']:.0%} ({rb['ci95'][0]:.0%}-{rb['ci95'][1]:.0%}) | "
                     f"{round(100 * (ra['success_rate'] - rb['success_rate'])) + 0:+d} pts | "
                     f"{ra['train_steps']} / {rb['train_steps']} |")
    ma = sum(r["success_rate"] for r in a.values()) / len(a)
    mb = sum(r["success_rate"] for r in b.values()) / len(b)
    lines.append(f"| **average** | **{ma:.1%}** | **{mb:.1%}** | {100 * (ma - mb):+.1f} pts | |")
    return lines


def _write_task_comparison(args, tasks: list[str]) -> None:
    """Side by side, per single task and on average, this family against ``--compare``."""
    from robopolicy.paths import slug

    res: dict[str, dict[str, dict]] = {}
    for policy in (args.policy, args.compare):
        res[policy] = {}
        for task in tasks:
            path = _results_dir(policy, args.obs, task) / f"{slug(task)}.json"
            if not path.exists():
                raise SystemExit(f"--compare: {path} is missing: run the {policy} benchmark on {task} first")
            res[policy][task] = json.loads(path.read_text())
    lines = task_comparison(res[args.policy], res[args.compare], (args.policy, args.compare))
    body = (f"Each family's own single-task runs ({args.obs} observations; their commands are in each family's "
            "section), the same demonstrations and the same held-out initial states per task; success with its 95% "
            "Wilson interval, and the plain average over the tasks.\n\n" + "\n".join(lines) + "\n\n" + provenance())
    write_section(f"Success: {args.policy} vs {args.compare}, single tasks ({args.obs} observations)", body)


if __name__ == "__main__":
    main()
