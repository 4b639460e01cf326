"""Statistics of an evaluation: binomial confidence intervals and latency summaries."""

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
