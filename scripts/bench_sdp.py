"""Streaming Diffusion Policy vs Diffusion Policy under reactive control (re-planning every step).

Every policy is asked for one action per control step (``n_action_steps=1``) at batch 1, with the
same UNet (down_dims 64-128-256, kernel 5), state observation 39-d, action 4-d, horizon 16, 2 obs
steps, 100 train timesteps; random weights (latency does not depend on training). Measured in one
run, interleaved round-robin so that load from other jobs hits every policy alike:

* SDP: ``act`` with the streaming buffer carried in ``PolicyState`` (steady state; the cold-start
  call that fills the buffer is reported on its own row),
* Diffusion Policy re-planning a whole chunk every step with DDPM-100 and with DDIM-10,
* and, for scale, Diffusion Policy as it normally runs: a DDIM-10 chunk every 8 control steps
  (``n_action_steps=8``), its call cost spread over the 8 actions it executes (not reactive: it
  re-plans only every 8th step, and that step waits for the whole call).

Reports denoiser evaluations per executed action (``state.info["denoiser_evals"]`` / actions per
call), the median policy call and the cost per executed action, with ratios. Targets: >= 8x fewer
evaluations than DDPM-100 and lower latency than DDIM-10 re-planning every step. Prints a markdown table and writes it to docs/benchmarks.md (unless --no-doc).

    python scripts/bench_sdp.py                    # ~1 minute on 2 cores
    python scripts/bench_sdp.py --steps 30 --threads 1 --no-doc

With ``--checkpoint`` it instead evaluates a trained SDP run with several ``steps_per_act``
(denoiser evaluations per control step; eval-time policy override, same weights: training draws
timesteps independently of it) and writes success against steps per control step:

    python scripts/bench_sdp.py --checkpoint checkpoints/bench_sdp_state_push-v3 --sdp-steps 1,2,4 --episodes 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from robopolicy.benchmarks import provenance, synthetic_stats, write_section
from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robopolicy.policies.streaming_diffusion import SDPConfig, StreamingDiffusionPolicy
from robopolicy.samplers import NoiseScheduleConfig
from robopolicy.types import FeatureSpec

STATE_DIM, ACTION_DIM, HORIZON, N_OBS = 39, 4, 16, 2


CHUNK = 8  # Diffusion Policy's default n_action_steps


def build(kind: str, sdp_steps: int = 1):
    """kind: sdp | ddpm100 | ddim10 (reactive: one action per call) | ddim10_chunk (CHUNK actions per call)."""
    features = FeatureSpec(action_dim=ACTION_DIM, state_dim=STATE_DIM)
    common = dict(horizon=HORIZON, n_obs_steps=N_OBS, n_action_steps=1, down_dims=(64, 128, 256), kernel_size=5)
    torch.manual_seed(0)
    if kind == "sdp":
        return StreamingDiffusionPolicy(SDPConfig(**common, steps_per_act=sdp_steps), features, synthetic_stats(features)).eval()
    if kind == "ddim10_chunk":
        common["n_action_steps"] = CHUNK
    sampler, steps = {"ddpm100": ("ddpm", 100), "ddim10": ("ddim", 10), "ddim10_chunk": ("ddim", 10)}[kind]
    cfg = DiffusionConfig(**common, noise=NoiseScheduleConfig(sampler=sampler, num_inference_steps=steps))
    return DiffusionPolicy(cfg, features, synthetic_stats(features)).eval()


def run(n_steps: int, warmup: int, sdp_steps: list[int], seed: int) -> dict[str, dict[str, float]]:
    names = [f"SDP (steps_per_act={s})" for s in sdp_steps] + ["Diffusion Policy DDPM-100", "Diffusion Policy DDIM-10",
                                                               CHUNKED]
    policies = [build("sdp", s) for s in sdp_steps] + [build("ddpm100"), build("ddim10"), build("ddim10_chunk")]
    gen = torch.Generator().manual_seed(seed)
    # One observation stream shared by all policies (random states: latency does not depend on them).
    obs_seq = [{"observation.state": torch.rand(1, N_OBS, STATE_DIM, generator=gen) * 2 - 1} for _ in range(warmup + n_steps)]
    states = [p.init_state(1) for p in policies]
    times: list[list[float]] = [[] for _ in policies]
    evals: list[list[int]] = [[] for _ in policies]
    cold: list[tuple[float, int]] = []
    with torch.inference_mode():
        for i, p in enumerate(policies):  # the first call (SDP cold start) timed on its own
            t0 = time.perf_counter()
            _, states[i] = p.act(obs_seq[0], states[i])
            cold.append((time.perf_counter() - t0, int(states[i].info["denoiser_evals"])))
        for step, obs in enumerate(obs_seq[1:]):
            for i, p in enumerate(policies):  # round-robin: shared-CPU noise hits every policy alike
                t0 = time.perf_counter()
                _, states[i] = p.act(obs, states[i])
                dt = time.perf_counter() - t0
                if step >= warmup - 1:
                    times[i].append(dt)
                    evals[i].append(int(states[i].info["denoiser_evals"]))
    out = {}
    for name, t, e, (ct, ce) in zip(names, times, evals, cold):
        policy = policies[names.index(name)]
        out[name] = {"ms": 1e3 * statistics.median(t), "evals": statistics.mean(e), "cold_ms": 1e3 * ct, "cold_evals": ce,
                     "params": sum(x.numel() for x in policy.parameters()),
                     "actions_per_call": int(policy.config.n_action_steps)}
    return out


CHUNKED = f"Diffusion Policy DDIM-10, {CHUNK}-action chunks (not reactive)"


def table(res: dict[str, dict[str, float]]) -> str:
    """One row per policy; costs per executed action (a call's cost over the actions it executes)."""
    def per_action(r):
        return r["ms"] / r["actions_per_call"], r["evals"] / r["actions_per_call"]

    ddpm_evals = per_action(res["Diffusion Policy DDPM-100"])[1]
    ddim_ms, chunk_ms = per_action(res["Diffusion Policy DDIM-10"])[0], per_action(res[CHUNKED])[0]
    rows = [
        "| policy | params | actions / call | denoiser evals / executed action | evals vs DDPM-100 "
        "| policy call (ms, median) | latency / executed action (ms) | vs DDIM-10 re-planning every step "
        f"| vs DDIM-10 {CHUNK}-action chunks | first call (evals, ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res.items():
        ms, evals = per_action(r)
        fewer, lat = ddpm_evals / evals, ms / ddim_ms
        verdict = ""
        if name.startswith("SDP"):
            verdict = " ok" if fewer >= 8 and lat < 1 else " MISSED"
        rows.append(
            f"| {name} | {r['params'] / 1e6:.2f} M | {r['actions_per_call']} | {evals:.3g} | {fewer:.1f}x fewer | "
            f"{r['ms']:.2f} | {ms:.2f} | {lat:.2f}x{verdict} | {ms / chunk_ms:.2f}x | {r['cold_evals']}, {r['cold_ms']:.1f} |"
        )
    return "\n".join(rows)


def success_vs_steps(args, sdp_steps: list[int]) -> None:
    from robopolicy.eval.sweep import checkpoint_meta, sweep, sweep_table

    step_dir, meta = checkpoint_meta(args.checkpoint, "sdp")
    settings = [(f"steps_per_act={s}", {"steps_per_act": s}, s) for s in sdp_steps]
    rows = sweep(step_dir, settings, args.episodes, args.n_envs, args.seed)
    trained = meta["policy_config"].get("steps_per_act")
    body = (f"Checkpoint `{step_dir}` (trained with steps_per_act={trained}), evaluated with each setting through "
            f"eval-time policy_overrides (same EMA weights), {args.episodes} episodes per task on held-out initial "
            f"states, seed {args.seed}. One action per control step; each step runs steps_per_act denoiser "
            "evaluations and the buffer holds (chunks x steps_per_act) noise levels.\n\n"
            + sweep_table(rows, "setting", "denoiser evals / control step") + "\n\n" + provenance())
    print(body)
    if not args.no_doc:
        write_section(f"Streaming Diffusion Policy: success vs denoising steps per control step ({meta['env']})", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=100, help="timed control steps per policy (median reported)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed control steps after the first call")
    ap.add_argument("--sdp-steps", default="1,2", help="comma list of SDP steps_per_act to measure")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default=None, help="a trained sdp run: success vs --sdp-steps instead of cost")
    ap.add_argument("--episodes", type=int, default=50, help="(--checkpoint) episodes per task")
    ap.add_argument("--n-envs", type=int, default=2, help="(--checkpoint) parallel environments")
    ap.add_argument("--no-doc", action="store_true", help="print only; do not update docs/benchmarks.md")
    ap.add_argument("--note", default="", help="what else ran on the machine, written next to the load average")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sdp_steps = [int(s) for s in args.sdp_steps.split(",") if s.strip()]
    if args.checkpoint:
        success_vs_steps(args, sdp_steps)
        return
    load_before = os.getloadavg()[0]
    res = run(args.steps, max(1, args.warmup), sdp_steps, args.seed)
    load_after = os.getloadavg()[0]
    body = (
        "Reactive control (one action per control step, re-planned every step) at batch 1: state 39-d, "
        f"action 4-d, horizon {HORIZON}, {N_OBS} obs steps, the same UNet (64-128-256, kernel 5) and 100 train "
        f"timesteps for every policy, random weights. Median of {args.steps} policy calls after {args.warmup} "
        f"warm-up calls, policies interleaved, {args.threads} threads. SDP's first call cold-starts its buffer "
        "(all noise levels); targets: >= 8x fewer denoiser evaluations than DDPM-100, latency below DDIM-10 "
        f"re-planning every step. For scale, the last row is Diffusion Policy as it normally runs, timed in the "
        f"same run: one DDIM-10 chunk per {CHUNK} control steps, its call cost spread over the {CHUNK} actions it "
        f"executes (it re-plans only every {CHUNK}th step, and that step waits for the whole call).\n\n"
        + table(res) + "\n\n" + provenance()
        + f"Load average (1 min) before/after: {load_before:.2f} / {load_after:.2f} on {os.cpu_count()} cores"
        + (f" ({args.note})" if args.note else "") + "\n"
    )
    print(body)
    if not args.no_doc:
        write_section("Streaming Diffusion Policy: reactive control cost", body)


if __name__ == "__main__":
    main()
