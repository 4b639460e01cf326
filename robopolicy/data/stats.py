"""Per-episode feature statistics and their aggregation, with lerobot's semantics.

Per episode and feature: min, max, mean, std, count and the quantiles q01/q10/q50/q90/q99.
Quantiles are read off a 5000-bin histogram spanning [min - 1e-10, max + 1e-10] with linear
interpolation inside the bin, which is what lerobot stores (so our stats.json and the ones lerobot
writes agree to float precision). Images get per-channel stats of shape (3, 1, 1) in [0, 1],
computed on a subsample of the episode's frames (lerobot's ``estimate_num_samples``), and ``count``
is then the number of frames sampled. Dataset stats aggregate episodes: count-weighted mean,
pooled variance, min of mins, max of maxes, count-weighted mean of each quantile (lerobot 0.4-0.6).
"""

from __future__ import annotations

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
STAT_KEYS = ("min", "max", "mean", "std", "count", *QUANTILE_KEYS)
NUM_BINS = 5000
_EDGE_PAD = 1e-10

Stats = dict[str, np.ndarray]


def _histogram_quantiles(col: np.ndarray, lo: float, hi: float) -> list[float]:
    edges = np.linspace(lo - _EDGE_PAD, hi + _EDGE_PAD, NUM_BINS + 1)
    hist, _ = np.histogram(col, bins=edges)
    cumsum = np.cumsum(hist)
    out = []
    for q in QUANTILES:
        target = q * len(col)
        idx = int(np.searchsorted(cumsum, target))
        if idx == 0:
            out.append(float(edges[0]))
        elif idx >= len(cumsum):
            out.append(float(edges[-1]))
        else:
            before = cumsum[idx - 1]
            in_bin = cumsum[idx] - before
            frac = (target - before) / in_bin if in_bin else 0.0
            out.append(float(edges[idx] + frac * (edges[idx + 1] - edges[idx])))
    return out


def vector_stats(x: np.ndarray) -> Stats:
    """Stats over the first axis of ``x`` (N,) or (N, D); every stat has shape (D,) (or (1,))."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"stats need a non-empty (N, D) array, got shape {x.shape}")
    # Same promotion as lerobot: ints -> float64, float32 stays float32 for mean/std.
    x = x.astype(np.result_type(x.dtype, np.float32), copy=False)
    mean = x.mean(axis=0)
    var = (x * x).mean(axis=0) - mean * mean
    stats: Stats = {
        "min": x.min(axis=0).astype(np.float64),
        "max": x.max(axis=0).astype(np.float64),
        "mean": mean.astype(np.float64),
        "std": np.sqrt(np.maximum(var, 0)).astype(np.float64),
        "count": np.array([len(x)], dtype=np.int64),
    }
    if len(x) < 2:  # no spread to bin: quantiles are the value itself
        for k in QUANTILE_KEYS:
            stats[k] = stats["mean"].copy()
        return stats
    qs = np.array(
        [
            _histogram_quantiles(x[:, d], float(stats["min"][d]), float(stats["max"][d]))
            for d in range(x.shape[1])
        ]
    )  # (D, Q)
    for j, k in enumerate(QUANTILE_KEYS):
        stats[k] = qs[:, j].astype(np.float64)
    return stats


def sample_frame_indices(
    n: int, min_samples: int = 100, max_samples: int = 10_000, power: float = 0.75
) -> np.ndarray:
    """Evenly spread frame indices used for image stats: all frames up to 100, then ~n**0.75."""
    lo = min(min_samples, n)
    k = max(lo, min(int(n**power), max_samples))
    return np.round(np.linspace(0, n - 1, k)).astype(int)


def image_stats(frames: np.ndarray) -> Stats:
    """Per-channel stats of uint8 frames (N, H, W, C): shape (C, 1, 1), scaled to [0, 1]."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"image stats need frames (N, H, W, C), got shape {frames.shape}")
    frames = frames[sample_frame_indices(len(frames))]
    h, w = frames.shape[1:3]
    if max(h, w) >= 300:  # lerobot's auto-downsample keeps stats cheap on large frames
        step = int(max(h, w) / 150)
        frames = frames[:, ::step, ::step]
    s = vector_stats(frames.reshape(-1, frames.shape[-1]))
    out = {k: (v if k == "count" else (v / 255.0).reshape(-1, 1, 1)) for k, v in s.items()}
    out["count"] = np.array([len(frames)], dtype=np.int64)
    return out


def aggregate_stats(stats_list: list[dict[str, Stats]]) -> dict[str, Stats]:
    """Combine per-episode stats into dataset stats (see the module docstring for the rules)."""
    keys: list[str] = []
    for s in stats_list:
        keys += [k for k in s if k not in keys]
    out: dict[str, Stats] = {}
    for key in keys:
        items = [s[key] for s in stats_list if key in s]
        counts = np.stack([np.asarray(it["count"], dtype=np.float64) for it in items])  # (E, 1)
        means = np.stack([np.asarray(it["mean"], dtype=np.float64) for it in items])
        w = counts.reshape(counts.shape + (1,) * (means.ndim - counts.ndim))
        total = counts.sum(axis=0)
        total_b = total.reshape(total.shape + (1,) * (means.ndim - 1 - total.ndim))
        mean = (means * w).sum(axis=0) / total_b
        var = (
            (np.stack([np.asarray(it["std"], dtype=np.float64) for it in items]) ** 2 + (means - mean) ** 2)
            * w
        ).sum(axis=0) / total_b
        agg: Stats = {
            "min": np.min(np.stack([np.asarray(it["min"], dtype=np.float64) for it in items]), axis=0),
            "max": np.max(np.stack([np.asarray(it["max"], dtype=np.float64) for it in items]), axis=0),
            "mean": mean,
            "std": np.sqrt(var),
            "count": total.astype(np.int64),
        }
        for q in QUANTILE_KEYS:
            if all(q in it for it in items):
                qv = np.stack([np.asarray(it[q], dtype=np.float64) for it in items])
                agg[q] = (qv * w).sum(axis=0) / total_b
        out[key] = agg
    return out


def stats_from_json(d: dict) -> dict[str, Stats]:
    """stats.json (nested lists) -> numpy arrays."""
    return {k: {s: np.asarray(v) for s, v in ft.items()} for k, ft in d.items()}


def exact_quantiles(x: np.ndarray) -> Stats:
    """q01..q99 of every column of ``x`` (N, D) over all its rows. The dataset-level quantiles in
    stats.json are count-weighted means of per-episode quantiles (lerobot's aggregation), which
    are not quantiles of the data: in a multi-task set where one task keeps the gripper at -1 and
    the others at +1, the mean of the per-episode q01 lands between them, and a tokenizer binned
    over that range can never emit either value. Training uses these instead."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if len(x) == 0:
        raise ValueError("exact_quantiles: no rows")
    q = np.quantile(x, QUANTILES, axis=0)
    return {k: q[i].astype(np.float32) for i, k in enumerate(QUANTILE_KEYS)}
