"""Diffusion Policy speed against LeRobot 0.4.4 (reference numbers from shared ANCHORS.md).

Measures, at the ANCHORS network sizes (action dim 4, 2 observation steps, horizon 16, 100 train
timesteps, kernel 5; state 39-d; image = state + one 3x84x84 camera, ResNet-18-GN, crop 76,
32 keypoints):
* chunk latency at batch 1 (``sample_chunk`` under inference_mode) with DDPM-100 and DDIM-10,
* one training step at batch 64 (loss + backward + AdamW step), fp32 and optionally bf16 autocast,
each as the median of ``--reps`` repetitions after warm-up, on ``--threads`` CPU threads.
Prints a markdown table and writes it to docs/benchmarks.md (unless ``--no-doc``).

    python scripts/bench_policy_latency.py                 # state + image, ~3 minutes on 2 cores
    python scripts/bench_policy_latency.py --configs state --reps 5 --no-doc
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from robopolicy.benchmarks import median_ms, provenance, synthetic_stats, write_section
from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robopolicy.types import FeatureSpec

# LeRobot 0.4.4 DiffusionPolicy, from ANCHORS.md (2-core machine of this kind, 2 threads), ms.
LEROBOT = {
    "state": {"params": 4.7e6, "ddpm100": 975.0, "ddim10": 95.0, "train": 231.0},
    "state-large": {"params": 250e6, "ddpm100": 21283.0, "ddim10": 2142.0, "train": 11194.0},
    "image": {"params": 16.4e6, "ddpm100": 991.0, "ddim10": 116.0, "train": 2427.0},
}
STATE_DIM, ACTION_DIM, BATCH = 39, 4, 64


def build(name: str) -> DiffusionPolicy:
    cameras = {"corner": (3, 84, 84)} if name == "image" else {}
    features = FeatureSpec(action_dim=ACTION_DIM, state_dim=STATE_DIM, cameras=cameras)
    down = (512, 1024, 2048) if name == "state-large" else (64, 128, 256)
    cfg = DiffusionConfig(horizon=16, n_obs_steps=2, n_action_steps=8, down_dims=down, kernel_size=5)

    torch.manual_seed(0)
    return DiffusionPolicy(cfg, features, synthetic_stats(features))


def batch_for(policy: DiffusionPolicy, b: int, with_actions: bool) -> dict:
    c = policy.config
    out = {"observation.state": torch.rand(b, c.n_obs_steps, STATE_DIM) * 2 - 1}
    for key, shape in zip(policy.features.image_keys, policy.features.cameras.values()):
        out[key] = torch.rand(b, c.n_obs_steps, *shape)
    if with_actions:
        out["action"] = torch.rand(b, c.horizon, ACTION_DIM) * 2 - 1
        out["action_is_pad"] = torch.zeros(b, c.horizon, dtype=torch.bool)
    return out


def bench_config(name: str, reps: int, bf16: bool, compile_unet: bool) -> dict[str, float]:
    policy = build(name)
    out: dict[str, float] = {"params": sum(p.numel() for p in policy.parameters())}
    policy.eval()
    obs = batch_for(policy, 1, with_actions=False)
    slow = name == "state-large"
    out["ddpm100"] = median_ms(lambda: policy.sample_chunk(obs, sampler="ddpm", num_steps=100), max(1, reps // 3) if slow else reps, 1)
    out["ddim10"] = median_ms(lambda: policy.sample_chunk(obs, sampler="ddim", num_steps=10), reps * 3, 2)
    if compile_unet:
        policy.config.compile_unet = True
        t0 = time.perf_counter()
        policy.sample_chunk(obs, sampler="ddim", num_steps=10)
        out["compile_s"] = time.perf_counter() - t0
        out["ddim10_compiled"] = median_ms(lambda: policy.sample_chunk(obs, sampler="ddim", num_steps=10), reps * 3, 2)
        policy.config.compile_unet = False

    policy.train()
    batch = batch_for(policy, BATCH, with_actions=True)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)  # the trainer's optimizer (foreach)

    def step(autocast: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, _ = policy.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_reps = max(2, reps // 3) if slow or name == "image" else reps
    out["train"] = median_ms(lambda: step(False), train_reps, 2)
    if bf16:
        out["train_bf16"] = median_ms(lambda: step(True), train_reps, 2)
    return out


def table(results: dict[str, dict[str, float]]) -> str:
    rows = [
        "| config | params | metric | robopolicy (ms) | LeRobot 0.4.4 (ms) | ratio | target ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {
        "ddpm100": ("DDPM-100 chunk, batch 1", 1 / 3),
        "ddim10": ("DDIM-10 chunk, batch 1", 1 / 3),
        "ddim10_compiled": ("DDIM-10 chunk, batch 1, torch.compile", 1 / 3),
        "train": ("train step, batch 64, fp32", 1 / 2),
        "train_bf16": ("train step, batch 64, bf16 autocast", 1 / 2),
    }
    for name, res in results.items():
        ref = LEROBOT[name]
        for key, (label, target) in labels.items():
            if key not in res:
                continue
            base = ref["train" if key.startswith("train") else key.replace("_compiled", "")]
            ratio = res[key] / base
            rows.append(
                f"| {name} | {res['params'] / 1e6:.1f} M | {label} | {res[key]:,.1f} | {base:,.0f} | "
                f"{ratio:.2f} | <= {target:.2f} {'ok' if ratio <= target else 'MISSED'} |"
            )
        if "compile_s" in res:
            rows.append(f"| {name} | | torch.compile time (first chunk) | {res['compile_s'] * 1e3:,.0f} | | | |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="state,image", help="comma list of: state, image, state-large")
    ap.add_argument("--reps", type=int, default=9, help="repetitions per measurement (median reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (ANCHORS used 2)")
    ap.add_argument("--bf16", action="store_true", help="also time the training step under bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="also time DDIM-10 with torch.compile'd UNet")
    ap.add_argument("--no-doc", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in LEROBOT]
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; choose from {sorted(LEROBOT)}")
    load_before = os.getloadavg()[0]
    if load_before > 1.0:
        print(f"warning: load average {load_before:.1f} on {os.cpu_count()} cores: other work will distort these timings")
    results = {n: bench_config(n, args.reps, args.bf16, args.compile) for n in names}
    load_after = os.getloadavg()[0]
    body = (
        "Diffusion Policy (robopolicy) vs LeRobot 0.4.4 DiffusionPolicy at the same network sizes "
        "(action dim 4, 2 obs steps, horizon 16, kernel 5, 100 train timesteps; image: +1 camera 84x84, "
        f"ResNet-18-GN, crop 76). Medians of {args.reps} reps (fewer for slow rows), {args.threads} threads. "
        "LeRobot column: shared ANCHORS.md, measured on another 2-core machine of this kind: compare the "
        "ratio, and rerun on a quiet machine.\n\n" + table(results) + "\n\n" + provenance()
        + f"Load average (1 min) before/after: {load_before:.2f} / {load_after:.2f} (other work on the machine slows every row)\n"
    )
    print(body)
    if not args.no_doc:
        write_section("Diffusion Policy latency and training step", body)


if __name__ == "__main__":
    main()
