"""Time to success: held-out success after N minutes of training, per policy family, through the
CLI a user runs (``robopolicy-train ... max_minutes=N``).

For every family and budget, the step count is set so that the learning-rate schedule ends at the
budget (steps = the family's measured steps/s x 60 x N x ``--fill``; warm-up 10% of the steps, at
most 500), ``max_minutes=N`` caps the wall clock, then the job's own evaluation runs on
``--eval-episodes`` held-out initial states. The steps/s come from a short calibration run of the
same command in the same conditions (``eval.episodes=0``), unless ``--its`` gives them. Each
result is kept in ``--out`` (one JSON per family and budget), so an interrupted benchmark resumes
and the table lists every result found.

    python scripts/bench_time_to_success.py --task push-v3 --policies diffusion sdp --minutes 5 10 20 --threads 1

The table goes into docs/benchmarks.md ("Time to success: <task>"), with each run's command.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FINAL_RE = re.compile(r"success rate (\d+(?:\.\d+)?)% over (\d+) episodes \(95% CI (\d+(?:\.\d+)?)%-(\d+(?:\.\d+)?)%\) "
                      r"after (\d+) steps, (\d+(?:\.\d+)?) min of training")
TRAINED_RE = re.compile(r"trained (\d+) steps, (\d+(?:\.\d+)?) min of training")


def plan_steps(its: float, minutes: float, fill: float) -> tuple[int, int]:
    """(steps, warmup steps) whose schedule ends at ``fill`` of a ``minutes`` budget at ``its`` steps/s."""
    steps = max(10, int(its * 60 * minutes * fill))
    return steps, min(500, steps // 10)


def parse_final(output: str) -> dict | None:
    """The job's final line as numbers, or None when it did not print one."""
    found = FINAL_RE.findall(output)
    if not found:
        return None
    sr, n, lo, hi, steps, minutes = found[-1]
    return {"success_rate": float(sr) / 100, "episodes": int(n), "ci95": [float(lo) / 100, float(hi) / 100],
            "train_steps": int(steps), "train_minutes": float(minutes)}


def run_cli(args: list[str], log: Path) -> str:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "-m", "robopolicy.cli.train", *args], cwd=ROOT, env=env,
                              stdout=f, stderr=subprocess.STDOUT)
    out = log.read_text()
    if proc.returncode:
        raise SystemExit(f"robopolicy-train failed (exit {proc.returncode}): see {log}")
    return out


def common(a, policy: str) -> list[str]:
    out = [f"policy={policy}", f"env=metaworld/mt1/{a.task}", "obs=state", f"episodes={a.episodes}", "eval.videos=0"]
    return out + ([f"num_threads={a.threads}"] if a.threads else []) + list(a.overrides)


def calibrate(a, policy: str) -> float:
    cache = a.out / f"{policy}_calibration.json"
    if cache.is_file():
        return json.loads(cache.read_text())["its"]
    args = common(a, policy) + ["steps=300", "warmup_steps=30", "eval.episodes=0", f"output_dir={a.out / 'runs'}",
                                f"run_name=calibrate_{policy}"]
    out = run_cli(args, a.out / "logs" / f"calibrate_{policy}.log")
    m = TRAINED_RE.findall(out)
    if not m:
        raise SystemExit(f"calibration of {policy}: no 'trained N steps, M min' line in {a.out / 'logs'}")
    steps, minutes = int(m[-1][0]), float(m[-1][1])
    its = steps / max(minutes * 60, 1e-6)
    cache.write_text(json.dumps({"its": its, "steps": steps, "minutes": minutes}))
    return its


def table(rows: list[dict], budgets: list[float]) -> str:
    lines = ["| policy | " + " | ".join(f"{m:g} min" for m in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for policy in sorted({r["policy"] for r in rows}):
        cells = []
        for m in budgets:
            r = next((r for r in rows if r["policy"] == policy and r["minutes"] == m), None)
            cells.append("not run" if r is None else
                         f"{r['success_rate']:.0%} ({r['ci95'][0]:.0%}-{r['ci95'][1]:.0%}), {r['train_steps']} steps")
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="push-v3")
    ap.add_argument("--policies", nargs="+", default=["diffusion", "sdp"])
    ap.add_argument("--minutes", nargs="+", type=float, default=[5, 10, 20])
    ap.add_argument("--episodes", type=int, default=50, help="demonstrations")
    ap.add_argument("--eval-episodes", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--its", type=float, default=None, help="steps/s for every family (skips the calibration)")
    ap.add_argument("--fill", type=float, default=0.95, help="share of the budget the schedule is planned to fill")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default results/time_to_success/<task>)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("overrides", nargs="*", help="extra robopolicy-train overrides")
    a = ap.parse_args()
    a.out = a.out or ROOT / "results" / "time_to_success" / a.task
    a.out.mkdir(parents=True, exist_ok=True)

    from robopolicy.benchmarks import machine, provenance, write_section

    for policy in a.policies:
        its = a.its or calibrate(a, policy)
        for minutes in a.minutes:
            path = a.out / f"{policy}_{minutes:g}min.json"
            if path.is_file():
                continue
            steps, warmup = plan_steps(its, minutes, a.fill)
            args = common(a, policy) + [f"steps={steps}", f"warmup_steps={warmup}", f"save_every={steps}",
                                        f"max_minutes={minutes:g}", f"eval.episodes={a.eval_episodes}",
                                        f"output_dir={a.out / 'runs'}", f"run_name={policy}_{minutes:g}min"]
            out = run_cli(args, a.out / "logs" / f"{policy}_{minutes:g}min.log")
            res = parse_final(out)
            if res is None:
                raise SystemExit(f"{policy} {minutes:g} min: the job printed no success line")
            res.update(policy=policy, minutes=minutes, planned_steps=steps, its=its,
                       command="robopolicy-train " + " ".join(args), machine=machine())
            path.write_text(json.dumps(res, indent=2))
            print(f"{policy} {minutes:g} min: {res['success_rate']:.0%} after {res['train_steps']} steps", flush=True)
    rows = [json.loads(p.read_text()) for p in sorted(a.out.glob("*min.json"))]
    body = (f"Meta-World `{a.task}`, state observations, {a.episodes} demonstrations, success on "
            f"{a.eval_episodes} held-out initial states after a training budget of N wall-clock minutes "
            "(`robopolicy-train ... max_minutes=N`), each family with a step count planned from its steps/s "
            f"(measured by a 300-step calibration run of the same command) so that the learning-rate schedule ends "
            f"at {a.fill:.0%} of the budget; cells: success (95% CI), steps trained. Each run's exact command is in "
            f"its JSON under `{a.out.relative_to(ROOT) if a.out.is_relative_to(ROOT) else a.out}`.\n\n"
            + table(rows, sorted({r["minutes"] for r in rows})) + "\n\n" + provenance())
    print(body)
    if not a.no_write:
        write_section(f"Time to success: {a.task}", body)


if __name__ == "__main__":
    main()
