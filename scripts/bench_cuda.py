"""Every policy family on a CUDA GPU: inference latency and throughput, and the training step.

Random weights at the benchmark sizes used on the CPU (state 39-d, action 4-d, 2 observation steps,
horizon 16; image rows add one 3x84x84 camera, the DDVLA rows one 3x64x64 camera as in its mt10
setup). For each row:

* ``act`` latency at batch 1 (observation in, raw actions out, ``torch.cuda.synchronize`` after
  each call), median over ``--reps`` calls; fp32 and under bf16 autocast;
* throughput at batch ``--batch`` (actions per second = batch x actions returned per call / time),
  the regime of vectorized evaluation;
* the training step at batch 64 (loss + backward + fused AdamW step), fp32 and bf16 autocast.

Diffusion Policy is also timed with its UNet under ``torch.compile`` in ``reduce-overhead`` mode
(CUDA graphs), where batch-1 sampling stops paying one kernel launch per layer.

    python scripts/bench_cuda.py                 # ~3 minutes on an H100, compile included
    python scripts/bench_cuda.py --reps 10 --no-compile --no-doc

Writes its table to docs/benchmarks.md and, with ``--json``, the raw numbers to a file.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable

import numpy as np
import torch

from robopolicy import registry
from robopolicy.benchmarks import provenance, synthetic_stats, write_section
from robopolicy.types import FeatureSpec

STATE_DIM, ACTION_DIM = 39, 4
COMMON = dict(horizon=16, n_obs_steps=2)


# Row name -> (policy family, camera size or None, config overrides)
ROWS: dict[str, tuple[str, int | None, dict[str, Any]]] = {
    "Diffusion Policy, state, DDPM-100": ("diffusion", None, dict(n_action_steps=8, noise={"sampler": "ddpm", "num_inference_steps": 100})),
    "Diffusion Policy, state, DDIM-10": ("diffusion", None, dict(n_action_steps=8)),
    "Diffusion Policy, image 84, DDIM-10": ("diffusion", 84, dict(n_action_steps=8)),
    "SDP, state, 1 step per act": ("sdp", None, dict(n_action_steps=1, steps_per_act=1)),
    # EBT's default is adaptive (stop once converged, else 4 steps, up to 8 while the energy stays high);
    # with random weights its stop rule means nothing, so the fixed budgets bracket its cost.
    "EBT-Policy, state, 4 steps": ("ebt", None, dict(n_action_steps=8, inference_steps=4, adaptive=False)),
    "EBT-Policy, state, 8 steps (adaptive ceiling)": ("ebt", None, dict(n_action_steps=8, inference_steps=8, max_inference_steps=8, adaptive=False)),
    "DDVLA, image 64, 12 rounds": ("ddvla", 64, dict(n_action_steps=8)),
    "DDVLA, image 64, autoregressive": ("ddvla", 64, dict(n_action_steps=8, decode_mode="autoregressive")),
}


def build(row: str, device: str) -> torch.nn.Module:
    family, image, overrides = ROWS[row]
    cls = registry.get("policy", family)
    cfg_cls = cls.config_class
    kwargs = dict(COMMON, **{k: v for k, v in overrides.items() if k != "noise"})
    cfg = cfg_cls(**kwargs)
    if "noise" in overrides:
        for k, v in overrides["noise"].items():
            setattr(cfg.noise, k, v)
    cameras = {"corner": (3, image, image)} if image else {}
    features = FeatureSpec(action_dim=ACTION_DIM, state_dim=STATE_DIM, cameras=cameras)
    torch.manual_seed(0)
    return cls(cfg, features, synthetic_stats(features)).to(device)


def inputs(policy, b: int, device: str, with_actions: bool) -> dict:
    c = policy.config
    g = torch.Generator().manual_seed(b)
    out = {"observation.state": torch.rand(b, c.n_obs_steps, STATE_DIM, generator=g) * 2 - 1}
    for key, shape in zip(policy.features.image_keys, policy.features.cameras.values()):
        out[key] = torch.rand(b, c.n_obs_steps, *shape, generator=g)
    if with_actions:
        out["action"] = torch.rand(b, c.horizon, ACTION_DIM, generator=g) * 2 - 1
        out["action_is_pad"] = torch.zeros(b, c.horizon, dtype=torch.bool)
    return {k: v.to(device) for k, v in out.items()}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def cuda_ms(fn: Callable[[], Any], reps: int, warmup: int) -> float:
    """Median wall time (ms) of ``fn`` with the GPU drained after each call."""
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def bench_row(row: str, reps: int, batch: int, device: str, train: bool = True) -> dict[str, float]:
    policy = build(row, device).eval()
    res: dict[str, float] = {"params": sum(p.numel() for p in policy.parameters())}
    for tag, bf16 in (("fp32", False), ("bf16", True)):
        for b, key in ((1, "b1"), (batch, "bN")):
            obs = inputs(policy, b, device, with_actions=False)
            state = [policy.init_state(b)]

            def act():
                with torch.inference_mode(), torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                    actions, state[0] = policy.act(obs, state[0])
                return actions

            n_act = act().shape[1]
            ms = cuda_ms(act, reps if b == 1 else max(3, reps // 3), 3)
            res[f"{key}_{tag}_ms"] = ms
            if b != 1:
                res[f"{key}_{tag}_actions_per_s"] = b * n_act / (ms / 1e3)
    if not train:
        return res
    policy.train()
    batch64 = inputs(policy, 64, device, with_actions=True)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4, fused=True)  # the trainer's optimizer
    for tag, bf16 in (("fp32", False), ("bf16", True)):
        def step():
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                loss, _ = policy.loss(batch64)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        res[f"train_{tag}_ms"] = cuda_ms(step, max(5, reps // 2), 3)
    return res


def bench_compiled(reps: int, device: str) -> dict[str, float]:
    """Diffusion Policy DDIM-10 at batch 1 with the UNet compiled (reduce-overhead = CUDA graphs)."""
    res: dict[str, float] = {}
    for row in ("Diffusion Policy, state, DDIM-10", "Diffusion Policy, state, DDPM-100"):
        policy = build(row, device).eval()
        policy.config.compile_unet, policy.config.compile_mode = True, "reduce-overhead"
        obs = inputs(policy, 1, device, with_actions=False)
        eager = policy.init_state(1)

        def act():
            with torch.inference_mode():
                return policy.act(obs, eager)[0]

        t0 = time.perf_counter()
        act()
        act()  # cudagraph trees record on the second call
        _sync()
        res[f"{row}|compile_s"] = time.perf_counter() - t0
        res[f"{row}|b1_compiled_ms"] = cuda_ms(act, reps, 3)
        # the compiled sampler gives the eager sampler's actions for the same noise
        torch.manual_seed(1)
        a = act().clone()
        policy.config.compile_unet = False
        torch.manual_seed(1)
        b = act()
        res[f"{row}|compiled_vs_eager_max_abs"] = float((a - b).abs().max())
    return res


def table(rows: dict[str, dict[str, float]], compiled: dict[str, float], batch: int) -> str:
    lines = [
        f"| policy | params | act batch 1, fp32 (ms) | act batch 1, bf16 (ms) | batch {batch}, fp32 (actions/s) | "
        f"batch {batch}, bf16 (actions/s) | train step b64, fp32 (ms) | train step b64, bf16 (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, r in rows.items():
        if "error" in r:
            lines.append(f"| {row} | failed: {r['error']} | | | | | | |")
            continue
        lines.append(
            f"| {row} | {r['params'] / 1e6:.1f} M | {r['b1_fp32_ms']:.2f} | {r['b1_bf16_ms']:.2f} | "
            f"{r['bN_fp32_actions_per_s']:,.0f} | {r['bN_bf16_actions_per_s']:,.0f} | {r.get('train_fp32_ms', float('nan')):.2f} | "
            f"{r.get('train_bf16_ms', float('nan')):.2f} |"
        )
    if compiled:
        lines += ["", "| Diffusion Policy, batch 1, UNet under torch.compile(mode='reduce-overhead') | eager fp32 (ms) | compiled (ms) | speed-up | compile + record (s) | max abs action difference vs eager |",
                  "|---|---|---|---|---|---|"]
        for row in ("Diffusion Policy, state, DDIM-10", "Diffusion Policy, state, DDPM-100"):
            if f"{row}|b1_compiled_ms" not in compiled:
                lines.append(f"| {row} | failed: {compiled.get(row + '|error', '?')} | | | | |")
                continue
            eager = rows.get(row, {}).get("b1_fp32_ms", float("nan"))
            c = compiled[f"{row}|b1_compiled_ms"]
            lines.append(f"| {row} | {eager:.2f} | {c:.2f} | {eager / c:.1f}x | {compiled[row + '|compile_s']:.0f} | "
                         f"{compiled[row + '|compiled_vs_eager_max_abs']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=30, help="timed calls per measurement (median reported)")
    ap.add_argument("--batch", type=int, default=256, help="batch for the throughput columns")
    ap.add_argument("--rows", nargs="*", default=list(ROWS), help="subset of rows (names as in the table)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--no-train", action="store_true", help="skip the training-step columns")
    ap.add_argument("--json", default=None, help="also write the raw numbers here")
    ap.add_argument("--device", default="cuda", help="cuda (the point); cpu only to dry-run the script")
    ap.add_argument("--no-doc", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = ap.parse_args()
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench_cuda.py needs a CUDA device (--device cpu only dry-runs it)")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # the speed a user gets
    rows: dict[str, dict[str, float]] = {}
    for row in args.rows:
        t0 = time.perf_counter()
        try:
            rows[row] = bench_row(row, args.reps, args.batch, device, train=not args.no_train)
        except Exception as e:  # one failing family must not hide the others' numbers
            rows[row] = {"error": f"{type(e).__name__}: {e}"[:200]}
        print(f"{row}: {time.perf_counter() - t0:.1f} s {rows[row]}", flush=True)
    compiled: dict[str, float] = {}
    if not args.no_compile:
        try:
            compiled = bench_compiled(args.reps, device)
        except Exception as e:
            compiled = {f"{r}|error": f"{type(e).__name__}: {e}"[:200] for r in ("Diffusion Policy, state, DDIM-10", "Diffusion Policy, state, DDPM-100")}
        print(compiled, flush=True)
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU (dry run)"
    body = (
        f"On **{gpu}** (CUDA {torch.version.cuda}, torch {torch.__version__}). Random weights at the benchmark "
        "sizes (state 39-d, action 4-d, 2 obs steps, horizon 16; image 84 = +1 camera 3x84x84, ResNet-18-GN; "
        "image 64 = the DDVLA mt10 input). `act` latency = observation in, raw actions out, GPU synchronized, "
        f"median of {args.reps} calls; throughput at batch {args.batch} counts the actions each call returns "
        "(8 per chunk; SDP returns 1 per control step); TF32 matmuls on. bf16 = autocast.\n\n"
        + table(rows, compiled, args.batch) + "\n\n" + provenance() + f"GPU: {gpu}\n"
    )
    print(body)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gpu": gpu, "rows": rows, "compiled": compiled}, f, indent=1)
    if not args.no_doc:
        write_section("CUDA: latency, throughput and training step per family", body)


if __name__ == "__main__":
    main()
