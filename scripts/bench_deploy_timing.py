"""Control-loop timing at several rates: loop period jitter p50/p99, deadline misses and inference
latency of a state policy driving the simulated PushBlock robot in real time.

    python scripts/bench_deploy_timing.py                       # 10, 20, 50 Hz x 60 s (the table)
    python scripts/bench_deploy_timing.py --duration 5 --no-doc # a quick check
    python scripts/bench_deploy_timing.py checkpoint=<run> --scheduler sync

Without a checkpoint the policy is an untrained Diffusion Policy of the default size (its compute,
not its actions, is what a timing benchmark needs). Writes the "Deploy: control-loop timing"
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hz", type=float, nargs="+", default=[10.0, 20.0, 50.0], help="control rates to measure")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per rate")
    ap.add_argument("--scheduler", default="async", help="sync | ensemble | async")
    ap.add_argument("--threshold", type=int, default=None,
                    help="async threshold (default: from the warm-up latency, ceil(1.5 * latency * hz) + 1)")
    ap.add_argument("--checkpoint", default=None, help="a state checkpoint (default: untrained default-size policy)")
    ap.add_argument("--env", default="pushblock", help="suite of the simulated robot")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1 leaves the other cores to the loop and the simulator)")
    ap.add_argument("--no-doc", action="store_true", help="print the table only")
    args = ap.parse_args([f"--{a}" if "=" in a and not a.startswith("-") else a for a in sys.argv[1:]])

    import numpy as np
    import torch
    from envs import make_suite

    from robopolicy.benchmarks import provenance, write_section
    from robopolicy.deploy import ControlLoop, PolicySource, RealClock, SimRobot, make_scheduler
    from robopolicy.deploy.loop import LoopConfig
    from robopolicy.deploy.testing import load_note, untrained_state_policy
    from robopolicy.train.checkpoint import load_policy

    if args.threads:
        torch.set_num_threads(args.threads)
    suite = make_suite(args.env, obs="state")
    policy = load_policy(args.checkpoint) if args.checkpoint else untrained_state_policy(suite, tiny=False)
    name = f"checkpoint {args.checkpoint}" if args.checkpoint else "untrained Diffusion Policy (default size)"
    rows = []
    for hz in args.hz:
        clock = RealClock()
        robot = SimRobot(suite, clock=clock)
        source = PolicySource(policy, dt=1.0 / hz)
        source.reset()
        for _ in range(5):  # warm-up: first calls allocate
            source.infer(robot.reset(0).data)
        kwargs = {}
        if args.scheduler == "async":  # never run dry: threshold >= latency / dt + 1 (scheduler.py),
            n = int(policy.config.n_action_steps)  # with a margin for the loop thread's share of the CPU
            lat = float(np.median(source.latencies[2:]))
            kwargs["threshold"] = args.threshold or min(n, math.ceil(1.5 * lat * hz) + 1)
        cfg = LoopConfig(hz=hz, duration_s=args.duration, stop_on_success=False, stop_on_done=False)
        with ControlLoop(robot, source, make_scheduler(args.scheduler, **kwargs), cfg, clock=clock) as loop:
            res = loop.run_episode(seed=suite.trial_seed(suite.tasks[0], 0, "eval"))
        robot.close()
        t = res.timing
        holds = ", ".join(f"{k} {v}" for k, v in sorted(t["holds"].items())) or "none"
        rows.append(f"| {hz:g} | {kwargs.get('threshold', '-')} | {t['duration_s']:.1f} | {t['ticks']} | {t['period_ms']['p50']:.2f} | "
                    f"{t['jitter_ms']['p50']:.3f} | {t['jitter_ms']['p99']:.3f} | {t['jitter_ms']['max']:.2f} | "
                    f"{t['deadline_misses']} ({100 * t['deadline_miss_rate']:.2f}%) | "
                    f"{t['inference']['chunks']} | {t['inference']['latency_ms_p50']:.1f} | "
                    f"{t['inference']['latency_ms_p99']:.1f} | {holds} |")
        print(rows[-1], flush=True)

    body = (f"{args.env} simulated robot (state), {name}, {args.threads} torch thread(s), scheduler "
            f"`{args.scheduler}`, real-time clock, "
            f"{args.duration:g} s per rate. Jitter is |loop period - 1/hz|; a deadline miss is a command sent "
            f"after the next tick was due (or a skipped tick); holds are ticks where the safety layer held the "
            f"robot (inference_late: no action ready, e.g. the first chunk of the run).\n\n"
            "| Hz | async threshold | s | ticks | period p50 (ms) | jitter p50 (ms) | jitter p99 (ms) | jitter max (ms) | "
            "deadline misses | chunks | inference p50 (ms) | inference p99 (ms) | holds |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n" + provenance() + load_note())
    print("\n" + body)
    if not args.no_doc:
        print(f"wrote {write_section('Deploy: control-loop timing', body)}")


if __name__ == "__main__":
    main()
