"""Environment speed: steps per second of each suite's env under uniformly random actions,
state-only and with one camera, on one core. Prints a markdown table and (unless --no-write)
replaces the "Environment speed" section of docs/benchmarks.md.

    python scripts/bench_envs.py                       # full run (~2 min)
    python scripts/bench_envs.py --seconds 2 --no-write
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from envs import make_suite

DEFAULT_SUITES = ["pushblock", "metaworld/mt1/push-v3", "robosuite/lift"]
TARGETS = {"metaworld": (700, 60)}  # steps/s the project asks for: (state, one 84x84 camera)


def measure(suite_name: str, obs: str, image_size: int, seconds: float, min_steps: int) -> dict:
    """Step one env with random actions for about ``seconds`` (resets included, as in real use)."""
    probe = make_suite(suite_name)
    camera = None
    if obs == "image":
        camera = make_suite(suite_name, obs="image").cameras[0]
        suite = make_suite(suite_name, obs="image", image_size=image_size, cameras=[camera])
    else:
        suite = probe
    task = suite.tasks[0]
    env = suite.make_env(task)
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    env.reset(seed=suite.trial_seed(task, 0, "train"))
    for _ in range(20):  # warm-up: first renders / JIT-ish caches
        env.step(rng.uniform(low, high).astype(np.float32))
    steps, resets, trial = 0, 0, 1
    env.reset(seed=suite.trial_seed(task, trial, "train"))
    start = time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(rng.uniform(low, high).astype(np.float32))
        steps += 1
        if terminated or truncated:
            trial += 1
            resets += 1
            env.reset(seed=suite.trial_seed(task, trial, "train"))
    elapsed = time.perf_counter() - start
    env.close()
    label = "state" if camera is None else f"image: {camera} {image_size}x{image_size}"
    return {"suite": suite_name, "task": task, "obs": label, "steps": steps, "resets": resets,
            "steps_per_s": steps / elapsed}


def table(rows: list[dict]) -> str:
    lines = ["| suite | task | observation | steps | steps/s | target |", "|---|---|---|---|---|---|"]
    for r in rows:
        family = r["suite"].split("/")[0]
        target = TARGETS.get(family)
        goal = "" if target is None else f">= {target[0] if r['obs'] == 'state' else target[1]}"
        lines.append(f"| {r['suite']} | {r['task']} | {r['obs']} | {r['steps']} | "
                     f"{r['steps_per_s']:,.0f} | {goal} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", nargs="+", default=DEFAULT_SUITES, help="suite names (make_suite)")
    ap.add_argument("--seconds", type=float, default=15.0, help="timed seconds per measurement")
    ap.add_argument("--min-steps", type=int, default=50, help="at least this many timed steps")
    ap.add_argument("--image-size", type=int, default=84, help="camera image side")
    ap.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md")
    args = ap.parse_args()

    rows = []
    for name in args.suites:
        for obs in ("state", "image"):
            row = measure(name, obs, args.image_size, args.seconds, args.min_steps)
            print(f"{name:28s} {row['obs']:28s} {row['steps_per_s']:9.0f} steps/s", flush=True)
            rows.append(row)

    from robopolicy.benchmarks import provenance, write_section

    body = (table(rows) + "\n\nOne env in one process, uniformly random actions, resets included; "
            "images rendered offscreen with MUJOCO_GL=" + os.environ.get("MUJOCO_GL", "") +
            " (shadows, reflections, multisampling off).\n\n" + provenance())
    print("\n" + body)
    if not args.no_write:
        print(f"wrote {write_section('Environment speed', body)}")


if __name__ == "__main__":
    main()
