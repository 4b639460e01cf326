"""``PolicyClient``: a policy server as an ``ActionSource``, with numpy, msgpack and websockets only.

Meant for the robot computer: it imports no torch (nor anything that does). The client keeps the
observation history (so a server restart mid-episode loses no frames) and sends the stacked window
with each ``infer``; the server keeps the policy state of this connection.

A dead server shows up as ``ServerUnavailable`` (a ``ConnectionError``): refused connections, a
closed socket, or no reply within ``timeout_s``. The client then drops the connection and tries to
reconnect on a later call, at most once per ``retry_interval_s``; the control loop holds the robot
safe meanwhile. A reconnect starts a fresh policy state on the server (``reset``).

    client = PolicyClient("ws://127.0.0.1:8765")
    chunk = client.infer({"observation.state": state}, task="push the block")
"""

from __future__ import annotations

import inspect
import itertools
import time
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from robopolicy.deploy.chunk import Chunk
from robopolicy.deploy.obs_spec import ObsSpec
from robopolicy.deploy.protocol import PROTOCOL_VERSION, ProtocolError, pack, unpack
from robopolicy.history import ObsHistory

# websockets >= 15 routes connections through HTTP proxies from the environment (a robot talks to
# its policy server directly); websockets >= 17 warns unless a plain connection is asked for.
_PARAMS = inspect.signature(connect).parameters
_CONNECT_KW: dict[str, Any] = {**({"proxy": None} if "proxy" in _PARAMS else {}),
                               **({"legacy": True} if "legacy" in _PARAMS else {})}


class ServerUnavailable(ConnectionError):
    """The policy server cannot be reached or stopped answering."""


class ServerError(RuntimeError):
    """The server answered a request with an error reply (``code`` from the protocol)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"policy server error [{code}]: {message}")
        self.code = code


class PolicyClient:
    """An ``ActionSource`` whose policy runs behind ``robopolicy-serve``."""

    def __init__(self, url: str = "ws://127.0.0.1:8765", n_envs: int = 1, dt: float | None = None,
                 timeout_s: float = 10.0, connect_timeout_s: float = 3.0, retry_interval_s: float = 0.5):
        """``dt`` labels the chunks' action spacing (the control period; None: the server's);
        ``timeout_s`` bounds one request round trip, after which the server counts as dead."""
        if n_envs < 1:
            raise ValueError(f"PolicyClient: n_envs must be >= 1, got {n_envs}")
        for name, v in (("timeout_s", timeout_s), ("connect_timeout_s", connect_timeout_s)):
            if not v > 0:
                raise ValueError(f"PolicyClient: {name} must be > 0, got {v}")
        if dt is not None and not dt > 0:
            raise ValueError(f"PolicyClient: dt must be > 0 or None, got {dt}")
        self.url = url
        self.n_envs = int(n_envs)
        self._dt = dt
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.retry_interval_s = float(retry_interval_s)
        self.spec: ObsSpec | None = None
        self.hello: dict[str, Any] = {}
        self.history: ObsHistory | None = None
        self.latencies: list[float] = []
        """Round-trip seconds of every successful ``infer``."""
        self.server_timings: list[dict[str, float]] = []
        """The server's own timing of each of those calls (decode, wait, infer, total)."""
        self.reconnects = 0
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._next_attempt = 0.0

    # --- connection ---------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def dt(self) -> float:
        if self._dt is not None:
            return self._dt
        if not self.hello:
            raise ServerUnavailable(f"PolicyClient: not connected to {self.url} yet (the server sets dt)")
        return float(self.hello["dt"])

    def connect(self) -> dict[str, Any]:
        """Open the connection (if needed), read the server's ``hello``, start a fresh session."""
        if self._ws is not None:
            return self.hello
        self._next_attempt = time.monotonic() + self.retry_interval_s
        try:
            ws = connect(self.url, open_timeout=self.connect_timeout_s, compression=None, max_size=2**26,
                         **_CONNECT_KW)
        except (OSError, TimeoutError, InvalidHandshake) as e:
            raise ServerUnavailable(f"no policy server at {self.url} ({type(e).__name__}: {e})") from None
        try:
            hello = unpack(ws.recv(timeout=self.timeout_s))
            if hello.get("type") != "hello" or not isinstance(hello.get("spec"), dict):
                raise ProtocolError("bad_message", f"expected the server's hello, got {hello.get('type')!r}")
            spec = ObsSpec.from_dict(hello["spec"])
        except (ConnectionClosed, OSError, TimeoutError) as e:
            ws.close()
            raise ServerUnavailable(f"policy server at {self.url} closed before its hello ({type(e).__name__})") from None
        except ValueError:  # ProtocolError included: not a robopolicy server of our version
            ws.close()
            raise
        if self.spec is not None and spec != self.spec:
            ws.close()
            raise ValueError(f"policy server at {self.url} now serves a different observation spec "
                             f"{spec.to_dict()} (was {self.spec.to_dict()}); restart the client")
        if self.spec is None:
            self.spec = spec
            self.history = ObsHistory(spec.n_obs_steps, batched=True)
        else:
            self.reconnects += 1
        self._ws, self.hello = ws, hello
        self._request({"type": "reset", "n_envs": self.n_envs})
        return hello

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            finally:
                self._ws = None

    def __enter__(self) -> "PolicyClient":
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _ensure_connected(self) -> None:
        if self._ws is not None:
            return
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            raise ServerUnavailable(f"policy server at {self.url} is unavailable; next connection attempt in {wait:.2f} s")
        self.connect()

    def _request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return its reply (replies to earlier, timed-out requests are skipped)."""
        self._ensure_connected()
        assert self._ws is not None
        rid = next(self._ids)
        try:
            self._ws.send(pack({**msg, "id": rid}))
            deadline = time.monotonic() + self.timeout_s
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no reply within {self.timeout_s} s")
                reply = unpack(self._ws.recv(timeout=remaining))
                if reply.get("id") == rid:
                    break
        except (ConnectionClosed, OSError, TimeoutError) as e:
            self._drop()
            raise ServerUnavailable(f"policy server at {self.url} stopped answering ({type(e).__name__}: {e})") from None
        except ProtocolError:
            self._drop()
            raise
        if reply["type"] == "error":
            raise ServerError(str(reply.get("code")), str(reply.get("error")))
        return reply

    def _drop(self) -> None:
        ws, self._ws = self._ws, None
        self._next_attempt = time.monotonic() + self.retry_interval_s
        if ws is not None:
            try:
                ws.close()
            except Exception:  # the socket is already gone; nothing left to release
                pass

    # --- ActionSource -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the episode: the local history now, the server's policy state if reachable (a
        reconnect starts a fresh one anyway)."""
        if self.history is not None:
            self.history.reset()
        if self._ws is not None:
            try:
                self._request({"type": "reset", "n_envs": self.n_envs})
            except ServerUnavailable:
                pass

    def observe(self, raw_obs: dict[str, np.ndarray]) -> None:
        if self.spec is None:
            self._ensure_connected()  # the first connection tells which keys to keep
        assert self.spec is not None and self.history is not None
        self.history.push(self.spec.select(raw_obs, self.n_envs))

    def infer(self, raw_obs: dict[str, np.ndarray], task: list[str] | str | None = None,
              t_obs: float | None = None) -> Chunk:
        t_obs = time.monotonic() if t_obs is None else float(t_obs)
        start = time.perf_counter()
        self.observe(raw_obs)  # recorded even if the server is down, so the history stays whole
        assert self.spec is not None and self.history is not None
        task = self.spec.check_task(task, self.n_envs)
        reply = self._request({"type": "infer", "obs": self.history.stacked(), "task": task, "t_obs": t_obs})
        actions = reply.get("actions")
        a_dim = int(self.hello.get("action_dim", -1))
        if not isinstance(actions, np.ndarray) or actions.ndim != 3 or actions.shape[0] != self.n_envs \
                or actions.shape[1] < 1 or actions.shape[2] != a_dim:
            shape = getattr(actions, "shape", type(actions).__name__)
            raise ProtocolError("bad_message", f"server sent actions of shape {shape}, expected "
                                f"({self.n_envs}, n, {a_dim})")
        latency = time.perf_counter() - start
        self.latencies.append(latency)
        timing = {k: float(v) for k, v in dict(reply.get("timing") or {}).items() if isinstance(v, (int, float))}
        self.server_timings.append(timing)
        info = {**dict(reply.get("info") or {}), "server_timing": timing}
        return Chunk(actions=actions.astype(np.float32, copy=False), t_obs=t_obs, dt=self.dt,
                     latency_s=latency, info=info)

    def health(self) -> dict[str, Any]:
        """The server's health reply (``ok``, uptime, clients, requests, errors)."""
        return self._request({"type": "health"})


__all__ = ["PolicyClient", "ServerUnavailable", "ServerError", "PROTOCOL_VERSION"]
