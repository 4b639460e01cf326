"""EBT-Policy inference cost per action chunk vs Diffusion Policy, at batch 1.

State observation 39-d, action 4-d, horizon 16, 2 obs steps, chunks of 8 executed actions; random
weights (latency does not depend on training). Rows, measured in one run with the callables
interleaved round-robin (``robopolicy.benchmarks.interleaved_ms``) so that load from other jobs
hits every row alike:

* EBT-Policy (default network: dim 128, 4 blocks, 4 actions per token) with fixed 2 and 4 descent
  steps, and the default adaptive descent (converged, else 4 steps, up to 8 while the energy stays
  above the calibrated threshold); each ``act`` warm-starts from the previous chunk, as in closed
  loop. An untrained model has an uncalibrated threshold (never extends past 4), so the fixed-step
  rows are the main result.
* Diffusion Policy (UNet 64-128-256, kernel 5) with DDPM-100 and DDIM-10.

Reports descent / denoiser steps per chunk and the median ``act`` latency (observation in, raw
actions out) with ratios to DDIM-10 and DDPM-100. Target: <= 4 steps and lower latency than
DDIM-10. Prints a markdown table and writes it to docs/benchmarks.md (unless --no-doc).

    python scripts/bench_ebt.py                         # ~1 minute on 2 quiet cores
    python scripts/bench_ebt.py --reps 10 --no-doc

With ``--checkpoint`` it instead evaluates a trained EBT run with fixed 1, 2, 4 descent steps and
the default adaptive descent: success, descent steps really spent and policy-call latency per
setting, same weights (eval-time policy overrides):

    python scripts/bench_ebt.py --checkpoint checkpoints/bench_ebt_state_push-v3 --episodes 50
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from robopolicy.benchmarks import interleaved_ms, provenance, synthetic_stats, write_section
from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robopolicy.policies.ebt import EBTConfig, EBTPolicy
from robopolicy.samplers import NoiseScheduleConfig
from robopolicy.types import FeatureSpec

STATE_DIM, ACTION_DIM, HORIZON, N_OBS, N_ACT = 39, 4, 16, 2, 8


def build() -> dict[str, tuple[torch.nn.Module, str]]:
    """Row name -> (policy, what one step is)."""
    features = FeatureSpec(action_dim=ACTION_DIM, state_dim=STATE_DIM)
    common = dict(horizon=HORIZON, n_obs_steps=N_OBS, n_action_steps=N_ACT)
    rows = {}
    for name, kw in (
        ("EBT-Policy, 2 steps", dict(inference_steps=2, adaptive=False)),
        ("EBT-Policy, 4 steps", dict(inference_steps=4, adaptive=False)),
        ("EBT-Policy, adaptive (default: up to 4, 8 while the energy stays high)", dict(adaptive=True)),
    ):
        torch.manual_seed(0)
        rows[name] = (EBTPolicy(EBTConfig(**common, **kw), features, synthetic_stats(features)).eval(), "energy descent steps")
    for name, sampler, steps in (("Diffusion Policy DDPM-100", "ddpm", 100), ("Diffusion Policy DDIM-10", "ddim", 10)):
        torch.manual_seed(0)
        cfg = DiffusionConfig(**common, down_dims=(64, 128, 256), kernel_size=5,
                              noise=NoiseScheduleConfig(sampler=sampler, num_inference_steps=steps))
        rows[name] = (DiffusionPolicy(cfg, features, synthetic_stats(features)).eval(), "denoiser evaluations")
    return rows


def run(reps: int, warmup: int, seed: int) -> dict[str, dict[str, float]]:
    rows = build()
    gen = torch.Generator().manual_seed(seed)
    obs = {"observation.state": torch.rand(1, N_OBS, STATE_DIM, generator=gen) * 2 - 1}
    states = {name: p.init_state(1) for name, (p, _) in rows.items()}
    steps: dict[str, list[int]] = {name: [] for name in rows}

    def call(name: str):
        policy = rows[name][0]

        def fn():
            _, states[name] = policy.act(obs, states[name])
            info = states[name].info
            steps[name].append(int(info.get("energy_steps", info.get("denoiser_evals", 0))))

        return fn

    with torch.inference_mode():
        ms = interleaved_ms({name: call(name) for name in rows}, reps, warmup)
    return {
        name: {"ms": ms[name], "steps": statistics.mean(steps[name][warmup:]), "what": rows[name][1],
               "params": sum(p.numel() for p in rows[name][0].parameters())}
        for name in rows
    }


def table(res: dict[str, dict[str, float]]) -> str:
    ddim, ddpm = res["Diffusion Policy DDIM-10"], res["Diffusion Policy DDPM-100"]
    lines = [
        "| policy | params | steps per chunk | latency per chunk (ms, median) | vs DDIM-10 | vs DDPM-100 |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in res.items():
        verdict = ""
        if name.startswith("EBT"):
            verdict = " ok" if r["ms"] < ddim["ms"] and r["steps"] <= 4 else " MISSED"
        lines.append(
            f"| {name} | {r['params'] / 1e6:.2f} M | {r['steps']:.2f} {r['what']} | {r['ms']:.2f} | "
            f"{r['ms'] / ddim['ms']:.2f}x{verdict} | {r['ms'] / ddpm['ms']:.3f}x |"
        )
    return "\n".join(lines)


def success_vs_steps(args) -> None:
    from robopolicy.eval.sweep import checkpoint_meta, sweep, sweep_table

    step_dir, meta = checkpoint_meta(args.checkpoint, "ebt")
    settings = [(f"{k} step{'s' * (k > 1)}, fixed", {"inference_steps": k, "adaptive": False}, k) for k in (1, 2, 4)]
    d = EBTConfig()  # today's defaults, not the ones saved with (possibly older) checkpoints
    settings.append(("adaptive (default)", {"adaptive": True, "inference_steps": d.inference_steps,
                                            "max_inference_steps": d.max_inference_steps, "stop_tol": d.stop_tol},
                     f"1-{d.max_inference_steps}"))
    rows = sweep(step_dir, settings, args.episodes, args.n_envs, args.seed, perturb_step=args.perturb_step)
    perturbed = (f" The object is displaced once at step {args.perturb_step} (as in the recovery benchmark)."
                 if args.perturb_step else "")
    body = (f"Checkpoint `{step_dir}`, evaluated with each descent setting through eval-time policy_overrides (same "
            f"EMA weights), {args.episodes} episodes per task on held-out initial states, seed {args.seed}. Adaptive "
            "(the default inference): a chunk stops once its last step moved it by at most stop_tol (0.01 RMS in "
            "normalized action units), else after 4 steps if its energy is at or below the threshold saved with the "
            "checkpoint, else up to 8; '(mean x)' is the steps it really spent per chunk." + perturbed + " The policy-call column "
            "is the evaluator's median `act` time (a batch of the parallel environments) under whatever load the "
            "machine had: it is noisy, and the cost table above is the latency measurement.\n\n"
            + sweep_table(rows, "energy descent", "descent steps / chunk") + "\n\n" + provenance())
    print(body)
    if not args.no_doc:
        title = f"EBT-Policy: success vs descent steps (trained checkpoint, {meta['env']})"
        write_section(title + (f", object displaced at step {args.perturb_step}" if args.perturb_step else ""), body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=50, help="timed chunks per policy (median reported)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed chunks per policy first")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default=None, help="a trained ebt run: success vs descent steps instead of cost")
    ap.add_argument("--episodes", type=int, default=50, help="(--checkpoint) episodes per task")
    ap.add_argument("--n-envs", type=int, default=2, help="(--checkpoint) parallel environments")
    ap.add_argument("--perturb-step", type=int, default=0, help="(--checkpoint) displace the object once at this step")
    ap.add_argument("--no-doc", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        success_vs_steps(args)
        return
    load_before = os.getloadavg()[0]
    res = run(args.reps, args.warmup, args.seed)
    load_after = os.getloadavg()[0]
    body = (
        f"Inference cost per action chunk at batch 1: state 39-d, action 4-d, horizon {HORIZON}, {N_OBS} obs "
        f"steps, {N_ACT} actions executed per chunk, random weights; `act` latency (observation in, raw actions "
        f"out), median of {args.reps} chunks after {args.warmup} warm-up chunks, policies interleaved, "
        f"{args.threads} thread(s). EBT-Policy warm-starts each chunk from the previous one; its adaptive row is "
        "untrained (uncalibrated threshold: it stops at 4 steps, or earlier once converged), so the "
        "fixed-step rows are the main result. Target: <= 4 steps and latency below DDIM-10.\n\n"
        + table(res) + "\n\n" + provenance()
        + f"Load average (1 min) before/after: {load_before:.2f} / {load_after:.2f} (other work on the machine slows every row)\n"
    )
    print(body)
    if not args.no_doc:
        write_section("EBT-Policy: inference steps and latency per chunk", body)


if __name__ == "__main__":
    main()
