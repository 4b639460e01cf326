"""Closed-loop success through ``robopolicy-deploy`` vs ``robopolicy-eval`` of the same checkpoint,
on the same held-out initial states. With ``clock=sim`` the two run the same episodes (same initial
states, same per-episode noise streams, same scheduler, simulated time): they must agree episode for
episode, success and length; in real time they should agree within their 95% confidence intervals.

    python scripts/bench_deploy_success.py checkpoint=checkpoints/<run> episodes=50
    python scripts/bench_deploy_success.py checkpoint=<run> env=metaworld/mt1/push-v3 clocks=real scheduler=async

Rows: the evaluator (vector envs, simulated time); the deploy loop with a simulated clock (the
evaluator's episodes again through the robot's code path); the deploy loop in real time (what a
robot runs: waiting for inference, holds and skipped actions included).
Writes the "Deploy: closed-loop success vs robopolicy-eval" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="run folder or step folder")
    ap.add_argument("--env", default=None, help="suite (default: the checkpoint's training env)")
    ap.add_argument("--episodes", type=int, default=50, help="episodes per task")
    ap.add_argument("--scheduler", default="sync", help="scheduler of both paths (sync | ensemble | async)")
    ap.add_argument("--clocks", nargs="+", default=["sim", "real"], help="deploy clocks to measure: sim real")
    ap.add_argument("--hz", type=float, default=None, help="deploy rate (default: the policy's fps)")
    ap.add_argument("--n-envs", type=int, default=2, help="evaluator worker envs")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of both paths")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-doc", action="store_true", help="print the table only")
    argv = [f"--{a}" if "=" in a and not a.startswith("-") else a for a in sys.argv[1:]]
    args = ap.parse_args([a.replace("n_envs=", "n-envs=") for a in argv])

    from envs import make_suite

    from robopolicy.benchmarks import provenance, write_section
    from robopolicy.deploy.testing import load_note
    from robopolicy.deploy.job import DeployJobConfig, run_deploy
    from robopolicy.eval.job import EvalJobConfig, run_eval
    from robopolicy.eval.stats import wilson_interval
    from robopolicy.train.checkpoint import resolve_checkpoint

    if args.threads:  # both paths on the same thread count (the evaluator runs first)
        import torch

        torch.set_num_threads(args.threads)
    step_dir = resolve_checkpoint(args.checkpoint)
    tmp = Path(tempfile.mkdtemp(prefix="bench_deploy_success_"))
    ev = run_eval(EvalJobConfig(checkpoint=str(step_dir), env=args.env, episodes=args.episodes, n_envs=args.n_envs,
                                videos=0, scheduler=args.scheduler, output=str(tmp / "eval"), seed=args.seed),
                  progress=True)
    env = ev["suite"]
    eval_eps = {(e["task"], e["trial"]): (e["success"], e["length"]) for e in ev["per_episode"]}
    rows = [_row("`robopolicy-eval`", "simulated", ev["successes"], ev["episodes"], ev["mean_length"], "-", "-", "-")]
    tasks = make_suite(env).tasks
    for clock in args.clocks:
        k = n = agree = same_length = 0
        steps, holds, misses = [], 0, 0
        for task in tasks:
            cfg = DeployJobConfig(checkpoint=str(step_dir), env=env, task=task, episodes=args.episodes, hz=args.hz,
                                  scheduler=args.scheduler, clock=clock, seed=args.seed, torch_threads=args.threads,
                                  output=str(tmp / f"deploy_{clock}_{task.replace('/', '_')}"), plot=False)
            res = run_deploy(cfg, progress=False)
            for e in res["per_episode"]:
                k, n = k + int(e["success"]), n + 1
                twin = eval_eps.get((task, e["trial"]))
                agree += int(twin is not None and e["success"] == twin[0])
                same_length += int(twin is not None and e["steps"] == twin[1])
                steps.append(e["steps"])
                holds += sum(v for key, v in e["safety_stats"].items() if key.startswith("hold:") and key != "hold:end")
            misses += res["timing"].get("deadline_misses", 0)
            print(f"deploy clock={clock} {task}: {res['successes']}/{res['episodes']}", flush=True)
        rows.append(_row(f"`robopolicy-deploy` clock={clock}", "real time" if clock == "real" else "simulated",
                         k, n, sum(steps) / n, f"{agree}/{n}", f"{same_length}/{n}", f"{holds} / {misses}"))
    lo, hi = wilson_interval(ev["successes"], ev["episodes"])
    body = (f"Checkpoint `{step_dir}` on `{env}` ({len(tasks)} task(s) x {args.episodes} held-out trials, the same "
            f"initial states in every row), scheduler `{args.scheduler}`, seed {args.seed} (each episode's sampling "
            f"noise from its own stream, seeded by the seed and the episode's initial state, in every row), "
            f"evaluator with {args.n_envs} envs. 'same success' / 'same length' count episodes whose outcome / "
            f"number of steps equals the evaluator's for the same trial: clock=sim must match on every episode; in "
            f"real time, inference takes time (holds, skipped actions), so only the rate is comparable: it matches "
            f"when it lies in the evaluator's 95% CI [{lo:.1%}, {hi:.1%}]."
            + ("" if "real" in args.clocks else " No real-time row: this run measured `--clocks sim` only.")
            + "\n\n"
            "| path | time | success | 95% CI | mean steps | same success as eval | same length as eval "
            "| holds / deadline misses |\n"
            "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n" + provenance() + load_note())
    print(body)
    if not args.no_doc:
        print(f"wrote {write_section('Deploy: closed-loop success vs robopolicy-eval', body)}")


def _row(name: str, time_kind: str, k: int, n: int, mean_steps: float, agree: str, same_length: str,
         holds: str) -> str:
    from robopolicy.eval.stats import wilson_interval

    lo, hi = wilson_interval(k, n)
    return (f"| {name} | {time_kind} | {k}/{n} ({k / n:.1%}) | [{lo:.1%}, {hi:.1%}] | {mean_steps:.1f} | {agree} | "
            f"{same_length} | {holds} |")


if __name__ == "__main__":
    main()
