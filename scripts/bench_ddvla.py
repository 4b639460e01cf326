"""Discrete Diffusion VLA: decoding cost, and success against decoding settings.

(1) Cost (default): decoder evaluations and latency per action chunk at batch 1, parallel decoding
    (``decode_rounds`` rounds, cosine schedule, secondary remasking) vs left-to-right
    autoregressive decoding of the *same* model (random weights: cost does not depend on them),
    observations like Meta-World mt10 with ``obs=image image_size=64``: one 64x64 camera + 39-d
    state + the instruction, 2 observation steps, action 4-d, horizon 16 (64 action tokens). The
    modes take turns (round-robin) so that load from other jobs hits both alike. Targets: >= 3x
    fewer decoder evaluations and <= 0.5x the latency of autoregressive decoding.

        python scripts/bench_ddvla.py                          # ~1-2 minutes on 2 cores

(2) Success (``--checkpoint``): evaluate a trained ddvla checkpoint with decoding rounds 1, 2, 4,
    8, 12 (remasking on), 12 with remasking off, and optionally autoregressive decoding
    (``--autoregressive``), through ``run_eval`` with eval-time ``policy_overrides`` (the same as
    ``robopolicy-eval checkpoint=... +policy_overrides.decode_rounds=4``).

        python scripts/bench_ddvla.py --checkpoint checkpoints/metaworld_mt10_ddvla_image --episodes 10

Both print a markdown table and write it to docs/benchmarks.md (unless ``--no-doc``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from robopolicy.benchmarks import interleaved_ms, provenance, synthetic_stats, write_section

STATE_DIM, ACTION_DIM, IMAGE = 39, 4, (3, 64, 64)
TASK = "push the puck to the goal"
CHUNK_TARGET_MS = 100.0  # issue 17: a Meta-World mt10 chunk at batch 1 on this 2-core CPU


def build(decode_mode: str, rounds: int):
    from robopolicy.policies.discrete_diffusion import DDVLAConfig, DDVLAPolicy
    from robopolicy.types import FeatureSpec

    features = FeatureSpec(action_dim=ACTION_DIM, state_dim=STATE_DIM, cameras={"corner": IMAGE}, fps=80, use_language=True)

    torch.manual_seed(0)  # the same weights for both modes
    cfg = DDVLAConfig(decode_mode=decode_mode, decode_rounds=rounds)
    return DDVLAPolicy(cfg, features, synthetic_stats(features)).eval()


def bench_cost(reps: int, rounds: list[int]) -> dict[str, dict[str, float]]:
    policies = {f"parallel, {r} rounds, remask": build("parallel", r) for r in rounds}
    policies["autoregressive"] = build("autoregressive", rounds[0])
    g = torch.Generator().manual_seed(0)
    obs = {"observation.state": torch.rand(1, 2, STATE_DIM, generator=g) * 2 - 1,
           "observation.images.corner": torch.rand(1, 2, *IMAGE, generator=g), "task": [TASK]}
    evals = {}
    for name, p in policies.items():
        _, state = p.act(obs, p.init_state(1))
        evals[name] = state.info["decoder_evals"]
    any_policy = next(iter(policies.values()))
    fns = {name: (lambda p=p: p.act(obs, p.init_state(1))) for name, p in policies.items()}

    def encode_only():
        with torch.inference_mode():
            any_policy.observation_tokens(obs)

    fns["observation encoding only"] = encode_only
    ms = interleaved_ms(fns, reps, warmup=2)
    params = sum(x.numel() for x in any_policy.parameters())
    return {name: {"ms": ms[name], "evals": evals.get(name, 0), "params": params} for name in fns}


def cost_table(res: dict[str, dict[str, float]]) -> str:
    ar = res["autoregressive"]
    rows = ["| decoding | decoder evals / chunk | evals vs AR | latency / chunk (ms, median) | latency vs AR | "
            f"chunk <= {CHUNK_TARGET_MS:.0f} ms |", "|---|---|---|---|---|---|"]
    for name, r in res.items():
        if name == "observation encoding only":
            rows.append(f"| {name} | 0 | | {r['ms']:.1f} | | |")
            continue
        fewer, lat = ar["evals"] / r["evals"], r["ms"] / ar["ms"]
        verdict = "" if name == "autoregressive" else (" ok" if fewer >= 3 and lat <= 0.5 else " MISSED")
        fast = "met" if r["ms"] <= CHUNK_TARGET_MS else "MISSED"
        rows.append(f"| {name} | {r['evals']} | {fewer:.1f}x fewer | {r['ms']:.1f} | {lat:.2f}x{verdict} | {fast} |")
    return "\n".join(rows)


def bench_success(args) -> tuple[list[dict], str, str]:
    from robopolicy.eval.sweep import checkpoint_meta, sweep

    step_dir, meta = checkpoint_meta(args.checkpoint, "ddvla")
    n_tokens = int(meta["policy_config"]["horizon"]) * int(meta["features"]["action_dim"])
    top = max(args.rounds)
    settings = [(f"parallel, {r} rounds, remask", {"decode_mode": "parallel", "decode_rounds": r, "remask": True}, r)
                for r in args.rounds]
    off = [r for r in args.rounds if r > 1] if args.remask_off_all else list(args.remask_off)
    if off:  # remasking off at these round counts (with 1 round there is nothing to re-check)
        settings += [(f"parallel, {r} rounds, no remask", {"decode_mode": "parallel", "decode_rounds": r, "remask": False}, r)
                     for r in off]
    elif not args.only_rounds:
        settings.append((f"parallel, {top} rounds, no remask", {"decode_mode": "parallel", "decode_rounds": top, "remask": False}, top))
    for r in args.gap_rounds:
        settings.append((f"parallel, {r} rounds, remask, gap score",
                         {"decode_mode": "parallel", "decode_rounds": r, "remask": True, "decode_score": "gap"}, r))
    if args.autoregressive:
        settings.append(("autoregressive", {"decode_mode": "autoregressive"}, n_tokens))
    if args.shard:  # this process runs its share of the settings only (the others run elsewhere); no table
        k, n = (int(x) for x in args.shard.split("/"))
        settings = shard(settings, k, n)
    rows = sweep(step_dir, settings, args.episodes, args.n_envs, args.seed, first_trial=args.first_trial,
                 reuse=args.reuse)
    return rows, str(step_dir), meta["env"]


def shard(settings: list, k: int, n: int) -> list:
    """Shard ``k`` of ``n``: settings dealt largest cost first (decoder evaluations, plus the
    observation encoding every setting pays, counted as 3) to the least-loaded shard, so the shards
    take about equally long; each keeps the list's order."""
    load, owner = [0.0] * n, {}
    for i in sorted(range(len(settings)), key=lambda i: -settings[i][2]):
        j = min(range(n), key=lambda j: load[j])
        owner[i], load[j] = j, load[j] + settings[i][2] + 3
    return [s for i, s in enumerate(settings) if owner[i] == k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=15, help="timed chunks per mode (median reported)")
    ap.add_argument("--rounds-cost", type=int, nargs="+", default=[2, 12],
                    help="parallel decoding rounds for the cost table (one row each)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--checkpoint", default=None, help="a trained ddvla run or step folder: run (2) instead of (1)")
    ap.add_argument("--rounds", type=int, nargs="*", default=[1, 2, 4, 8, 12], help="(2): decoding rounds to evaluate")
    ap.add_argument("--only-rounds", action="store_true",
                    help="(2): only the --rounds settings (remasking on), without the extra no-remask row")
    ap.add_argument("--remask-off-all", action="store_true",
                    help="(2): also each --rounds setting (> 1 round) with remasking off")
    ap.add_argument("--remask-off", type=int, nargs="*", default=[],
                    help="(2): also evaluate remasking off at these round counts (instead of --remask-off-all)")
    ap.add_argument("--gap-rounds", type=int, nargs="*", default=[],
                    help="(2): also these rounds with the confidence-gap score (decode_score=gap), remasking on")
    ap.add_argument("--autoregressive", action="store_true", help="(2): also evaluate autoregressive decoding")
    ap.add_argument("--episodes", type=int, default=50, help="(2): episodes per task")
    ap.add_argument("--first-trial", type=int, default=0,
                    help="(2): first held-out trial; e.g. 20 after a main evaluation of trials 0-19, so a setting "
                         "is chosen on initial states that evaluation never saw")
    ap.add_argument("--n-envs", type=int, default=2, help="(2): parallel environments")
    ap.add_argument("--tag", default="", help="(2): added to the section title, e.g. which training objective")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard", default=None, metavar="K/N",
                    help="(2): evaluate only shard K of N of the settings, balanced by decoding rounds (split a sweep over "
                         "processes; implies --no-doc)")
    ap.add_argument("--reuse", action="store_true",
                    help="(2): read a setting's evaluation from its results folder when one of the same episodes "
                         "exists (e.g. run by --shard processes) instead of running it again")
    ap.add_argument("--no-doc", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.checkpoint:
        from robopolicy.eval.sweep import sweep_table

        rows, step_dir, env = bench_success(args)
        # what the row labels do not name is the checkpoint's own decoding config: state it
        saved = json.loads((Path(step_dir) / "meta.json").read_text()).get("policy_config") or {}
        varied = {"decode_mode", "decode_rounds", "remask"} | ({"decode_score"} if args.gap_rounds else set())
        rest = ", ".join(f"{k}={v}" for k, v in saved.items()
                         if (k.startswith(("decode_", "remask")) or k in ("temperature", "n_action_steps"))
                         and k not in varied)
        body = (f"Checkpoint `{step_dir}`, evaluated with each decoding setting through eval-time policy_overrides "
                f"(same weights, EMA), {args.episodes} episodes per task on held-out initial states "
                f"(trials {args.first_trial}-{args.first_trial + args.episodes - 1}), seed {args.seed}. "
                f"Decoding fields the rows do not name, as saved with the checkpoint: {rest or 'none'}.\n\n"
                + sweep_table(rows, "decoding", "decoder evals / chunk") + "\n\n" + provenance())
        block = f", held-out trials {args.first_trial}-{args.first_trial + args.episodes - 1}" if args.first_trial else ""
        tag = f", {args.tag}" if args.tag else ""
        title = f"Discrete Diffusion VLA: success vs decoding rounds and remasking ({env}{tag}{block})"
    else:
        load_before = os.getloadavg()[0]
        res = bench_cost(args.reps, args.rounds_cost)
        load_after = os.getloadavg()[0]
        p = next(iter(res.values()))["params"]
        body = ("Decoding cost per action chunk at batch 1, the same ddvla model (default config: d_model 256, 4 layers, "
                f"{p / 1e6:.1f} M parameters, random weights) decoding 64 action tokens (horizon 16 x 4 dims, 256 bins) "
                "from one 64x64 camera + 39-d state + instruction, 2 observation steps (Meta-World mt10, obs=image "
                f"image_size=64). The observation is encoded once per chunk. Median of {args.reps} chunks per mode, "
                f"modes interleaved, {args.threads} threads. Targets: >= 3x fewer decoder evaluations and <= 0.5x the "
                "latency of autoregressive decoding; a chunk <= 100 ms (issue 17).\n\n" + cost_table(res) + "\n\n" + provenance()
                + f"Load average (1 min) before/after: {load_before:.2f} / {load_after:.2f} (other jobs share the CPU)\n")
        title = "Discrete Diffusion VLA: decoding cost, parallel vs autoregressive"
    print(body)
    if not (args.no_doc or args.shard):
        write_section(title, body)


if __name__ == "__main__":
    main()
