"""Compare a dataset's action range as stats.json stores it (lerobot's per-episode quantiles,
averaged) with the exact quantiles over its frames (what training uses), and, given a checkpoint
with a discrete tokenizer, the range its bins really cover.

    python scripts/action_ranges.py datasets/metaworld_mt10_image \
        --checkpoint checkpoints/bench_ddvla_image_metaworld_mt10
"""

from __future__ import annotations

import argparse

import numpy as np

from robopolicy.data import LeRobotDataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--checkpoint", default=None)
    args = ap.parse_args()
    ds = LeRobotDataset(args.dataset, camera_keys=[])
    if ds.stats is None or "action" not in ds.stats:
        raise SystemExit(f"{args.dataset} has no action statistics (meta/stats.json)")
    stored, exact = ds.stats["action"], ds.training_stats()["action"]
    rows = {"stats.json q01..q99": (stored["q01"], stored["q99"]), "exact q01..q99": (exact["q01"], exact["q99"]),
            "min..max": (stored["min"], stored["max"])}
    if args.checkpoint:
        import robopolicy

        tok = robopolicy.load_policy(args.checkpoint).tokenizer
        sd = tok.state_dict()
        if "low" not in sd:
            raise SystemExit(f"{args.checkpoint}: its action tokenizer is not discrete (no bins)")
        low, width = sd["low"].numpy(), sd["width"].numpy()
        rows["checkpoint's bins"] = (low, low + width * tok.config.n_bins)
    print("| range | " + " | ".join(f"dim {d}" for d in range(len(exact["q01"]))) + " |")
    print("|---|" + "---|" * len(exact["q01"]))
    for name, (lo, hi) in rows.items():
        print(f"| {name} | " + " | ".join(f"{a:.2f}..{b:.2f}" for a, b in zip(np.ravel(lo), np.ravel(hi))) + " |")


if __name__ == "__main__":
    main()
