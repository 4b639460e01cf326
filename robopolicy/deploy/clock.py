"""Clocks for the control loop: wall time on a robot, simulated time for exact, repeatable runs.

Both return seconds from ``now()`` and block in ``sleep_until(t)``; every other deploy component
takes its times from the loop's clock, so swapping the clock is all it takes to run the same loop
faster than real time with deterministic timing (the evaluator's ``step * dt`` semantics).
"""

from __future__ import annotations

import time


class RealClock:
    """``time.monotonic()``; ``sleep_until`` sleeps, then spins the last ``spin_s`` seconds
    (``time.sleep`` overshoots by 0.05-1 ms on Linux, which would show up as period jitter)."""

    realtime = True

    def __init__(self, spin_s: float = 0.0005):
        if spin_s < 0:
            raise ValueError(f"RealClock: spin_s must be >= 0, got {spin_s}")
        self.spin_s = float(spin_s)

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, t: float) -> None:
        while True:
            remaining = t - time.monotonic()
            if remaining <= 0:
                return
            # sleep(0) in the spin phase releases the GIL for the inference thread.
            time.sleep(remaining - self.spin_s if remaining > self.spin_s else 0)


class SimClock:
    """Simulated time: ``now`` moves only when the loop sleeps, so inference and physics take zero
    simulated time (as in the evaluator with ``latency_steps=0``)."""

    realtime = False

    def __init__(self, start: float = 0.0):
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, float(t))
