"""Progress for long loops: a tqdm bar on a terminal; in a log file or CI (stderr not a TTY),
where every bar refresh would become a line of its own, a plain line at most every
``interval_s`` seconds or 10% of the total, with the same postfix (loss, success, ...)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def progress_bar(total: int | None, desc: str = "", *, initial: int = 0, unit: str = "it", disable: bool = False,
                 leave: bool = True, stream: TextIO | None = None, interval_s: float = 30.0):
    """A tqdm bar when ``stream`` (default stderr) is a terminal, else a ``PlainProgress``.
    Both offer update / set_postfix / write / close and work as context managers."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    if disable or (callable(isatty) and isatty()):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, initial=initial, unit=unit, disable=disable, leave=leave,
                    file=stream, dynamic_ncols=True)
    return PlainProgress(total, desc, initial=initial, unit=unit, stream=stream, interval_s=interval_s)


class PlainProgress:
    """Progress as occasional plain lines: ``train: 300/6000 (5%) 12.1 it/s, 1.5 min, loss=0.0321``."""

    def __init__(self, total: int | None, desc: str = "", *, initial: int = 0, unit: str = "it",
                 stream: TextIO | None = None, interval_s: float = 30.0, clock=time.monotonic):
        self.total, self.desc, self.unit, self.interval_s = total, desc, unit, interval_s
        self.n = self.initial = initial
        self.stream = sys.stderr if stream is None else stream
        self.postfix: dict[str, Any] = {}
        self._clock = clock
        self._t0 = self._last_t = clock()
        self._last_n = initial
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        crossed_tenth = bool(self.total) and int(10 * self.n / self.total) > int(10 * self._last_n / self.total)
        if now - self._last_t >= self.interval_s or crossed_tenth:
            self._emit(now)

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def write(self, message: str) -> None:
        print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n != self._last_n:  # the final count, unless the last line already showed it
                self._emit(self._clock())

    def line(self, now: float | None = None) -> str:
        now = self._clock() if now is None else now
        elapsed = now - self._t0
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        post = "".join(f", {k}={v}" for k, v in self.postfix.items())
        return f"{self.desc + ': ' if self.desc else ''}{count}{pct} {rate:.1f} {self.unit}/s, {elapsed / 60:.1f} min{post}"

    def _emit(self, now: float) -> None:
        print(self.line(now), file=self.stream, flush=True)
        self._last_t, self._last_n = now, self.n

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
