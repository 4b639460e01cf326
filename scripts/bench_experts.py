"""Scripted-expert success per task on the fixed eval initial states (``suite.trial_seed``),
episodes spread over worker processes. Prints a markdown table and (unless --no-write) replaces
the "Scripted experts" section of docs/benchmarks.md.

    python scripts/bench_experts.py --episodes 50                    # the lead's run
    python scripts/bench_experts.py --episodes 50 --metaworld mt50   # all 50 Meta-World tasks
    python scripts/bench_experts.py --episodes 4 --no-write          # quick check
    python scripts/bench_experts.py --families metaworld --tasks soccer-v3 --split train --no-write
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

from envs import make_suite

METAWORLD_FIVE = ["reach-v3", "push-v3", "pick-place-v3", "drawer-open-v3", "button-press-topdown-v3"]
ROBOSUITE = ["lift", "stack", "pickplacecan"]


def jobs_for(args) -> list[tuple[str, str]]:
    """(suite name, task) pairs to measure."""
    out: list[tuple[str, str]] = []
    if "pushblock" in args.families:
        out.append(("pushblock", "pushblock"))
    if "metaworld" in args.families:
        if args.tasks:
            out += [(f"metaworld/mt1/{t}", t) for t in args.tasks]
        elif args.metaworld == "five":
            out += [(f"metaworld/mt1/{t}", t) for t in METAWORLD_FIVE]
        else:
            name = f"metaworld/{args.metaworld}"
            out += [(name, t) for t in make_suite(name).tasks]
    if "robosuite" in args.families:
        out += [(f"robosuite/{t}", t) for t in ROBOSUITE]
    return out


def run_chunk(suite_name: str, task: str, trials: list[int], split: str) -> list[dict]:
    """Run the expert from the given trials' initial states; an episode succeeds if any step
    reports success (it stops there)."""
    suite = make_suite(suite_name)
    env = suite.make_env(task)
    expert = suite.make_expert(task)
    limit = suite.max_episode_steps(task)
    results = []
    for trial in trials:
        obs, _ = env.reset(seed=suite.trial_seed(task, trial, split))
        expert.reset()
        steps = None
        for k in range(limit):
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            if info["success"]:
                steps = k + 1
                break
            if terminated or truncated:
                break
        results.append({"suite": suite_name, "task": task, "trial": trial,
                        "success": steps is not None, "steps": steps})
    env.close()
    return results


def _run_chunk_star(job: tuple) -> list[dict]:
    return run_chunk(*job)


def table(results: list[dict], order: list[tuple[str, str]]) -> str:
    from robopolicy.eval.stats import wilson_interval

    lines = ["| suite | task | episodes | success | 95% CI | steps to success (mean / max) |",
             "|---|---|---|---|---|---|"]
    totals = [0, 0]
    for suite_name, task in order:
        rows = [r for r in results if r["suite"] == suite_name and r["task"] == task]
        n, k = len(rows), sum(r["success"] for r in rows)
        totals[0] += k
        totals[1] += n
        lo, hi = wilson_interval(k, n)
        steps = [r["steps"] for r in rows if r["success"]]
        step_txt = f"{sum(steps) / len(steps):.0f} / {max(steps)}" if steps else "-"
        lines.append(f"| {suite_name} | {task} | {n} | {k / max(n, 1):.0%} | "
                     f"[{lo:.0%}, {hi:.0%}] | {step_txt} |")
    lines.append(f"| **all** | | {totals[1]} | {totals[0] / max(totals[1], 1):.1%} | | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=50, help="episodes per task")
    ap.add_argument("--split", choices=["train", "eval"], default="eval", help="initial-state split")
    ap.add_argument("--families", nargs="+", default=["pushblock", "metaworld", "robosuite"],
                    choices=["pushblock", "metaworld", "robosuite"], help="suite families to include")
    ap.add_argument("--metaworld", choices=["five", "mt10", "mt50"], default="five",
                    help="which Meta-World tasks: reach/push/pick-place/drawer-open/"
                         "button-press-topdown, MT10 or all 50")
    ap.add_argument("--tasks", nargs="+", default=None,
                    help="only these Meta-World tasks (overrides --metaworld), e.g. box-close-v3")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    ap.add_argument("--chunk", type=int, default=10, help="episodes per job")
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md")
    args = ap.parse_args()
    if args.episodes < 1 or args.chunk < 1 or args.workers < 1:
        raise ValueError("--episodes, --chunk and --workers must be >= 1")

    order = jobs_for(args)
    jobs = [(s, t, list(range(i, min(i + args.chunk, args.episodes))), args.split)
            for s, t in order for i in range(0, args.episodes, args.chunk)]
    # Longest jobs first (robosuite, then Meta-World) so the pool's tail stays short.
    jobs.sort(key=lambda j: (not j[0].startswith("robosuite"), not j[0].startswith("metaworld")))
    start = time.perf_counter()
    results: list[dict] = []
    # spawn: workers must not inherit a parent's GL/threads state
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for chunk in pool.imap_unordered(_run_chunk_star, jobs):
            results += chunk
            r = chunk[0]
            print(f"{r['suite']:32s} trials {chunk[0]['trial']:3d}-{chunk[-1]['trial']:3d}: "
                  f"{sum(c['success'] for c in chunk)}/{len(chunk)}", flush=True)
    minutes = (time.perf_counter() - start) / 60

    from robopolicy.benchmarks import provenance, write_section

    body = (table(results, order) + f"\n\n{args.episodes} episodes per task from the '{args.split}' "
            f"initial states (trial 0..{args.episodes - 1}); success = any step reports success; "
            f"{args.workers} worker processes, {minutes:.1f} min.\n\n" + provenance())
    print("\n" + body)
    if not args.no_write:
        print(f"wrote {write_section('Scripted experts', body)}")


if __name__ == "__main__":
    main()
