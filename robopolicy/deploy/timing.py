"""``TimingLog``: what every tick of a control run did and when, its summary and its plot.

Per tick: when it was due, when the loop woke, when the command went out, the observation's age,
the latency of a chunk that arrived in this tick, the hold reason (if the safety layer held the
robot) and whether the tick missed its deadline (command sent after the next tick was due). The
loop period is the time between consecutive wake-ups; its jitter is ``|period - 1/hz|``.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Tick:
    """One control tick."""

    episode: int
    """Episode index within the run (periods are only measured between ticks of one episode)."""
    tick: int
    """Index on the fixed-rate grid (ticks the loop fell behind on are skipped, not run late)."""
    t_sched: float
    """When the tick was due (loop clock, seconds)."""
    t_start: float
    """When the loop woke up for it."""
    t_applied: float
    """When the command had been sent to the robot."""
    obs_age: float
    """Age of the observation used, at ``t_start`` (seconds)."""
    latency: float
    """Inference latency of the chunk that arrived in this tick (seconds); NaN if none arrived."""
    hold: str
    """Why the robot was held this tick ('' if the policy's action was sent)."""
    deadline_miss: bool
    """The command went out after the next tick was due."""
    skipped: int = 0
    """Grid ticks skipped right before this one because the loop fell a period behind (misses)."""


def _pct(x: np.ndarray, q: float, scale: float = 1e3) -> float | None:
    return float(np.percentile(x, q) * scale) if x.size else None


class TimingLog:
    """Per-tick records of one run (``record``), ``summary()``, ``save(dir)`` and ``plot(path)``."""

    def __init__(self, hz: float):
        if not hz > 0:
            raise ValueError(f"TimingLog: hz must be > 0, got {hz}")
        self.hz = float(hz)
        self.period = 1.0 / self.hz
        self.ticks: list[Tick] = []

    def record(self, tick: Tick) -> None:
        self.ticks.append(tick)

    def episode(self, index: int) -> "TimingLog":
        """The ticks of one episode, as a log of their own."""
        sub = TimingLog(self.hz)
        sub.ticks = [t for t in self.ticks if t.episode == index]
        return sub

    def column(self, name: str) -> np.ndarray:
        return np.array([getattr(t, name) for t in self.ticks])

    def periods(self) -> np.ndarray:
        """Seconds between consecutive wake-ups within each episode."""
        if len(self.ticks) < 2:
            return np.zeros(0)
        same = np.diff(self.column("episode")) == 0
        return np.diff(self.column("t_start"))[same]

    def summary(self) -> dict[str, Any]:
        """Loop period, jitter and wake-up lateness (ms), deadline misses, inference latency (ms),
        observation age (ms) and holds by reason."""
        n = len(self.ticks)
        skipped = int(sum(t.skipped for t in self.ticks))
        out: dict[str, Any] = {"hz": self.hz, "ticks": n, "skipped_ticks": skipped}
        if n == 0:
            return out
        start, applied = self.column("t_start"), self.column("t_applied")
        period = self.periods()
        jitter = np.abs(period - self.period)
        late = start - self.column("t_sched")
        lat = self.column("latency")
        lat = lat[np.isfinite(lat)]
        misses = int(self.column("deadline_miss").sum()) + skipped
        out.update({
            "episodes": int(len(set(self.column("episode").tolist()))),
            "duration_s": float(applied[-1] - start[0]),
            "period_ms": {"mean": float(period.mean() * 1e3) if period.size else None,
                          "p50": _pct(period, 50), "p99": _pct(period, 99),
                          "max": float(period.max() * 1e3) if period.size else None},
            "jitter_ms": {"p50": _pct(jitter, 50), "p99": _pct(jitter, 99),
                          "max": float(jitter.max() * 1e3) if jitter.size else None},
            "wake_late_ms": {"p50": _pct(late, 50), "p99": _pct(late, 99)},
            "deadline_misses": misses,
            "deadline_miss_rate": misses / (n + skipped),
            "inference": {"chunks": int(lat.size), "latency_ms_p50": _pct(lat, 50),
                          "latency_ms_p99": _pct(lat, 99), "latency_ms_max": float(lat.max() * 1e3) if lat.size else None},
            "obs_age_ms": {"p50": _pct(self.column("obs_age"), 50), "p99": _pct(self.column("obs_age"), 99)},
            "holds": dict(Counter(t.hold for t in self.ticks if t.hold)),
        })
        return out

    def save(self, out_dir: str | Path, name: str = "timing") -> dict[str, Path]:
        """``<name>.csv`` (one row per tick) and ``<name>_summary.json``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        csv_path, json_path = out_dir / f"{name}.csv", out_dir / f"{name}_summary.json"
        cols = [f.name for f in fields(Tick)]
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for t in self.ticks:
                w.writerow([getattr(t, c) for c in cols])
        json_path.write_text(json.dumps(self.summary(), indent=2) + "\n")
        return {"csv": csv_path, "summary": json_path}

    def plot(self, path: str | Path, title: str = "") -> Path | None:
        """Loop period and inference latency over the run, holds and misses marked; None if empty."""
        if len(self.ticks) < 2:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        start = self.column("t_start")
        t = start - start[0]
        same = np.diff(self.column("episode")) == 0
        period_ms = np.diff(start)[same] * 1e3
        lat = self.column("latency") * 1e3
        s = self.summary()
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
        ax1.plot(t[1:][same], period_ms, ".", ms=2, label="loop period")
        ax1.axhline(self.period * 1e3, color="k", ls="--", lw=0.8, label=f"target {self.period * 1e3:.1f} ms")
        miss = self.column("deadline_miss")
        if miss.any():
            ax1.plot(t[miss], np.full(miss.sum(), self.period * 1e3), "rx", label="deadline miss")
        holds = np.array([bool(x.hold) for x in self.ticks])
        if holds.any():
            ax1.plot(t[holds], np.full(holds.sum(), self.period * 1e3 * 0.9), "|", color="orange", label="hold")
        ax1.set_ylabel("ms")
        ax1.legend(loc="upper right", fontsize=8)
        j = s.get("jitter_ms", {})
        ax1.set_title(f"{title + ': ' if title else ''}{self.hz:g} Hz, jitter p50 {j.get('p50') or 0:.2f} / "
                      f"p99 {j.get('p99') or 0:.2f} ms, {s.get('deadline_misses', 0)} deadline misses")
        ok = np.isfinite(lat)
        ax2.plot(t[ok], lat[ok], ".", ms=3, label="inference latency")
        ax2.axhline(self.period * 1e3, color="k", ls="--", lw=0.8)
        ax2.set_xlabel("s")
        ax2.set_ylabel("ms")
        ax2.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
