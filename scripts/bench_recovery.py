"""Recovery and uncertainty benchmark: evaluate trained checkpoints with and without one mid-episode
perturbation (the task's object displaced once, at a fixed step), and, for a policy that reports an
uncertainty (EBT-Policy: its final energy), how well that signal predicts a failed episode (AUROC).

    python scripts/bench_recovery.py --runs checkpoints/bench_diffusion_state_push-v3 \
        checkpoints/bench_ebt_state_push-v3 --perturb-step 40 --episodes 50

Each run's result is kept in results/recovery/<run>.json, so several invocations fill one table.
Tasks whose object sits on a hinge or slide (drawer, button) have no perturbation: see
``envs.base.SimEnv.perturb``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from robopolicy.benchmarks import parse_overrides, provenance, write_section

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "recovery"


def _eval(run: str, perturb_step: int, episodes: int, threads: int | None, overrides: dict) -> dict:
    from robopolicy.eval.job import EvalJobConfig, run_eval

    if threads:
        import torch

        torch.set_num_threads(threads)
    # default folder: <step>/eval/<suite>[_<overrides>][_perturb<N>] (robopolicy.eval.job.eval_tag)
    return run_eval(EvalJobConfig(checkpoint=run, episodes=episodes, videos=1,
                                  perturb_step=perturb_step, policy_overrides=overrides))


def _auroc(res: dict) -> str:
    u = res.get("uncertainty")
    if not u or u.get("auroc_mean") is None:
        return "n/a"
    return f"{u['auroc_mean']:.2f} / {u['auroc_max']:.2f}"


def _row(r: dict) -> str:
    clean, pert = r["clean"], r["perturbed"]
    change = 100 * (pert["success_rate"] - clean["success_rate"])
    ov = r.get("policy_overrides") or {}
    label = r["policy"] + (f" ({', '.join(f'{k}={v}' for k, v in ov.items())})" if ov else "")
    return (f"| {label} | {r['task']} | {clean['success_rate']:.0%} | {pert['success_rate']:.0%} "
            f"({pert['perturbed_episodes']} perturbed) | {change:+.0f} pts | {_auroc(clean)} | {_auroc(pert)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", default=[], help="run folders (their newest checkpoint is evaluated)")
    ap.add_argument("--perturb-step", type=int, default=40, help="env step at which the object is displaced")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--policy-overrides", nargs="+", default=[], metavar="FIELD=VALUE",
                    help="eval-time policy settings, e.g. an inference default newer than the checkpoint's config")
    args = ap.parse_args()
    overrides = parse_overrides(args.policy_overrides, "--policy-overrides")

    OUT.mkdir(parents=True, exist_ok=True)
    for run in [] if args.table_only else args.runs:
        meta_cfg = json.loads(next(Path(run).glob("step_*/meta.json")).read_text())
        clean = _eval(run, 0, args.episodes, args.threads, overrides)
        pert = _eval(run, args.perturb_step, args.episodes, args.threads, overrides)
        keep = ("episodes", "success_rate", "ci95", "mean_length", "perturb_step", "perturbed_episodes", "uncertainty")
        row = {"run": run, "policy": meta_cfg.get("policy", Path(run).name), "task": clean["suite"].split("/")[-1],
               "clean": {k: clean[k] for k in keep}, "perturbed": {k: pert[k] for k in keep},
               "policy_overrides": overrides, "command": provenance()}
        (OUT / f"{Path(run).name}.json").write_text(json.dumps(row, indent=2))
        print(_row(row))
    rows = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    if not rows:
        return
    lines = ["| policy | task | success | success, perturbed | change | AUROC of uncertainty for failure (mean / max over episode) | same, perturbed |",
             "|---|---|---|---|---|---|---|"] + [_row(r) for r in rows]
    runs = "\n".join(f"- {r['run']}: " + r["command"].strip().replace("  \n", "; ").replace("\n", " ") for r in rows)
    body = (f"Each trained checkpoint (EMA weights) evaluated twice on the same {rows[0]['clean'].get('episodes', args.episodes)} "
            f"held-out initial states: as is, and with the task's object displaced once by 6 cm in a seeded "
            f"random direction at env step {args.perturb_step} (episodes already decided by then are not "
            "perturbed; the count is shown). AUROC: how well the policy's reported uncertainty (EBT-Policy: "
            "final energy of each chunk, averaged or maxed over the episode) ranks failed episodes above "
            "successful ones (0.5 = no signal; n/a = no uncertainty reported, or no failures).\n\n"
            + "\n".join(lines) + "\n\nRuns (command, machine, date):\n\n" + runs + "\n")
    write_section("Recovery from a perturbation, and uncertainty", body)


if __name__ == "__main__":
    main()
