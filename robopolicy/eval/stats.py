"""Statistics of an evaluation: binomial confidence intervals, latency summaries, and the AUROC of
an uncertainty signal for predicting failure."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a success rate (95% for the default ``z``).

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0/n or n/n,
    which matters for the 10-50 episode evaluations of this field. ``n == 0`` gives (0, 1).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # The bounds are exactly 0 at 0/n and 1 at n/n; round-off would give 1e-17 or 0.9999999999999999.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def latency_stats(latencies_s: Sequence[float]) -> dict[str, float | int]:
    """Count, mean, median, p95 and max of per-call latencies (seconds). The first call is
    reported separately: it includes one-off warm-up (allocations, kernel selection)."""
    x = np.asarray(list(latencies_s), dtype=np.float64)
    if x.size == 0:
        return {"calls": 0}
    steady = x[1:] if x.size > 1 else x
    return {
        "calls": int(x.size),
        "first_s": float(x[0]),
        "mean_s": float(steady.mean()),
        "p50_s": float(np.percentile(steady, 50)),
        "p95_s": float(np.percentile(steady, 95)),
        "max_s": float(steady.max()),
    }


def auroc(scores: Sequence[float], labels: Sequence[bool | int]) -> float:
    """Area under the ROC curve of ``scores`` for predicting ``labels`` (1/True = positive).

    The rank-sum (Mann-Whitney U) form: the probability that a random positive scores higher
    than a random negative, ties counting one half. Used with uncertainty as the score and
    failure as the positive label: 1.0 = uncertainty separates failures perfectly, 0.5 = chance.
    """
    s = np.asarray(list(scores), dtype=np.float64)
    y = np.asarray(list(labels))
    if s.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"auroc: need two 1-d sequences of one length, got shapes {s.shape} and {y.shape}")
    if not np.all(np.isin(y, (0, 1))):
        raise ValueError(f"auroc: labels must be 0/1 or bool, got values {sorted(set(y.tolist()))}")
    if not np.all(np.isfinite(s)):
        raise ValueError("auroc: scores must be finite")
    y = y.astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"auroc: needs both classes, got {n_pos} positives and {n_neg} negatives")
    # Average ranks (1-based) with ties sharing the mean of the ranks they span.
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + 1 + b) / 2.0
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))
