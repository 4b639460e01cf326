"""``InferenceWorker``: an ActionSource driven from a background thread, so the control loop never
blocks on inference (asynchronous inference) and can bound how long it waits for a chunk.

Every call to the source (``observe``, ``infer``, ``reset``) goes through one queue and runs on the
worker thread in submission order. The source's observation history is therefore only touched by
one thread, and frames observed while a chunk is being computed are recorded right after it, in
order, so the history always holds consecutive control steps.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import numpy as np

from robopolicy.deploy.chunk import Chunk


class InferenceWorker:
    """Runs ``source`` (an ActionSource) on a daemon thread; one inference in flight at a time."""

    def __init__(self, source: Any, name: str = "inference"):
        self.source = source
        self._q: queue.Queue = queue.Queue()
        self._cond = threading.Condition()
        self._result: Chunk | BaseException | None = None
        self._busy = False
        self._error: BaseException | None = None  # from observe/reset: raised at the next call
        self.submitted_at: float | None = None
        """Loop-clock time of the request in flight (None when idle)."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- loop side -----------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A request is in flight or its result has not been collected yet."""
        with self._cond:
            return self._busy or self._result is not None

    def observe(self, raw_obs: dict[str, np.ndarray]) -> None:
        self._raise_pending()
        self._q.put(("observe", raw_obs))

    def submit(self, raw_obs: dict[str, np.ndarray], task: Any, t_obs: float, now: float) -> None:
        """Queue an inference on ``raw_obs`` (observed at ``t_obs``); ``now`` is the loop time."""
        self._raise_pending()
        with self._cond:
            if self._busy or self._result is not None:
                raise RuntimeError("InferenceWorker.submit: a request is already in flight")
            self._busy = True
        self.submitted_at = now
        self._q.put(("infer", raw_obs, task, t_obs))

    def poll(self, timeout: float | None = 0.0) -> Chunk | BaseException | None:
        """The finished request's chunk (or the exception it raised), waiting up to ``timeout``
        seconds (None: until done); None if nothing finished (or nothing was submitted)."""
        with self._cond:
            if timeout is None:
                while self._busy and self._result is None:
                    self._cond.wait()
            elif timeout > 0:
                end = time.monotonic() + timeout
                while self._busy and self._result is None:
                    left = end - time.monotonic()
                    if left <= 0 or not self._cond.wait(left):
                        break
            result, self._result = self._result, None
            if result is not None:
                self.submitted_at = None
            return result

    def reset(self, timeout: float | None = 30.0, noise_seeds: Any = None) -> None:
        """Reset the source once everything queued before has run (waits for a request in flight;
        its result is discarded); ``noise_seeds`` go to ``source.reset`` (a ``PolicySource``'s
        per-env noise streams)."""
        done = threading.Event()
        self._q.put(("reset", done, noise_seeds))
        if not done.wait(timeout):
            raise TimeoutError(f"InferenceWorker.reset: the source did not finish within {timeout} s")
        with self._cond:
            self._result, self._busy = None, False
        self.submitted_at = None
        self._raise_pending()

    def close(self, timeout: float = 5.0) -> None:
        self._q.put(("stop",))
        self._thread.join(timeout)

    def _raise_pending(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    # --- worker thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._q.get()
            kind = item[0]
            if kind == "stop":
                return
            if kind == "observe":
                try:
                    self.source.observe(item[1])
                except BaseException as e:  # handed to the loop thread
                    self._error = e
            elif kind == "infer":
                try:
                    result: Chunk | BaseException = self.source.infer(item[1], task=item[2], t_obs=item[3])
                except BaseException as e:
                    result = e
                with self._cond:
                    self._result, self._busy = result, False
                    self._cond.notify_all()
            elif kind == "reset":
                try:
                    if item[2] is None:
                        self.source.reset()
                    else:
                        self.source.reset(noise_seeds=item[2])
                except BaseException as e:
                    self._error = e
                finally:
                    item[1].set()
