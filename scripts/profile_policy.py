"""Where the time of a Diffusion Policy chunk and training step goes, by torch.profiler.

The same networks as ``scripts/bench_policy_latency.py`` (its ``Ours`` builder: state 39-d or
state + one 84x84 camera, action 4, horizon 16, UNet 64-128-256), on ``--threads`` CPU threads:
a DDIM-10 chunk at batch 1 and a training step at batch 64 (loss + backward + the trainer's fused
AdamW). Self CPU time of every aten op is summed into groups (convolution forward, convolution
backward, GroupNorm, Mish, optimizer, matmul, the rest); the table gives each group's share and
the slowest ops. The profiler adds its own overhead per op, so the totals run above the
benchmark's medians; the shares are what this is for.

    python scripts/profile_policy.py                    # state + image, table into docs/benchmarks.md
    python scripts/profile_policy.py --configs state --no-doc
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

GROUPS = (  # (group, substrings of aten op names); first match wins
    ("convolution backward", ("convolution_backward", "conv_transpose2d_backward", "slow_conv2d_backward")),
    ("convolution forward", ("conv", "mkldnn_convolution")),
    ("GroupNorm (fwd + bwd)", ("group_norm",)),
    ("Mish (fwd + bwd)", ("mish",)),
    ("optimizer (AdamW)", ("_fused_adamw", "adamw", "Optimizer.step")),
    ("matmul / linear", ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear")),
    ("max-pool / softmax / other kernels", ("max_pool", "softmax")),
    ("tensor bookkeeping (empty, copy, view, cat, ...)", ("empty", "copy", "view", "as_strided", "permute", "cat",
                                                          "unsqueeze", "transpose", "resize", "contiguous",
                                                          "_to_copy", "select", "slice", "split", "squeeze")),
)


def group_of(name: str) -> str:
    """The group of one profiler row (unit-tested)."""
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return "elementwise / other"


def profile_rows(fn, calls: int) -> tuple[dict[str, float], list[tuple[str, float, int]], float]:
    """Self CPU ms per group and per op (top rows), averaged per call, and the total per call."""
    from torch.profiler import ProfilerActivity, profile

    fn(), fn()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            fn()
    groups: dict[str, float] = defaultdict(float)
    ops = []
    for ev in prof.key_averages():
        if ev.key.startswith("Optimizer.step") or ev.key.startswith("Optimizer.zero_grad"):
            continue  # record_function wrappers: their ops are counted below them
        ms = ev.self_cpu_time_total / 1e3 / calls
        groups[group_of(ev.key)] += ms
        ops.append((ev.key, ms, ev.count // calls))
    ops.sort(key=lambda r: -r[1])
    return dict(groups), ops, sum(groups.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="state,image", help="comma list of: state, image")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=4, help="slowest ops listed per measurement")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()

    import torch

    from bench_policy_latency import Ours
    from robopolicy.benchmarks import provenance, write_section

    torch.set_num_threads(args.threads)
    rows = []
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        ours = Ours(name)
        for label, measurement, calls in (("DDIM-10 chunk, batch 1", "ddim10", 5), ("train step, batch 64", "train", 3)):
            groups, ops, total = profile_rows(ours.fn(measurement), calls)
            shares = ", ".join(f"{g} {100 * ms / total:.0f}%" for g, ms in sorted(groups.items(), key=lambda kv: -kv[1])
                               if ms / total >= 0.02)
            top = "; ".join(f"`{k}` {ms:.1f} ms x{n}" for k, ms, n in ops[: args.top])
            rows.append(f"| {name} | {label} | {total:.1f} | {shares} | {top} |")
            print(rows[-1], flush=True)
    body = (
        "Self CPU time per call under torch.profiler, summed over aten ops into groups (groups under 2% are "
        "left out; the profiler's own per-op overhead inflates the totals, so read the shares). Networks and "
        "inputs are those of \"Diffusion Policy latency and training step\" (random weights, our side only); "
        "the training step includes the trainer's fused AdamW. `x N` is calls per chunk or step.\n\n"
        "| config | measurement | profiled ms per call | share of self CPU time | slowest ops (ms per call) |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n" + provenance()
    )
    print(body)
    if not args.no_doc:
        write_section("Diffusion Policy: where the time goes (torch.profiler)", body)


if __name__ == "__main__":
    main()
