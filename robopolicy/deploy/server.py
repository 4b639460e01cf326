"""``PolicyServer``: any checkpoint behind a websocket server (msgpack + numpy, deploy/protocol.py).

Each connection is a session with its own policy state (a ``PolicySource`` over the shared policy);
clients stack the observation history themselves and send whole windows, so a reconnect loses
nothing but the policy state. Inference runs in worker threads, one forward at a time (one model,
one device), so the event loop keeps answering health checks and other clients meanwhile.

Bad input never stops the server: a malformed, wrong-version, wrong-shape or oversized request gets
an ``error`` reply and the connection stays open. A frame above ``4 * max_message_bytes`` is not
even read: websockets closes that one connection (code 1009) and the server serves on.
``GET /healthz`` answers plain HTTP (for probes that do not speak websocket).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import torch
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from robopolicy.deploy.action_source import PolicySource
from robopolicy.deploy.obs_spec import ObsSpec
from robopolicy.deploy.protocol import ProtocolError, error_message, pack, unpack

log = logging.getLogger("robopolicy.serve")

MAX_ENVS = 1024
"""Largest batch a session may ask for (a bound on the memory one request can make us allocate)."""


@dataclass
class _Session:
    """One connection's state: its policy runner (created by ``reset`` or the first ``infer``)."""

    source: PolicySource | None = None
    requests: int = 0


class PolicyServer:
    """Serve ``policy`` (a robopolicy ``Policy``) on ``ws://host:port``."""

    def __init__(self, policy: torch.nn.Module, host: str = "127.0.0.1", port: int = 8765,
                 max_message_bytes: int = 16 * 2**20, dt: float | None = None,
                 metadata: dict[str, Any] | None = None):
        """``port`` 0 picks a free port (read ``.port`` after ``start``); ``dt`` None is
        ``1 / policy.features.fps``; ``metadata`` (e.g. the training env) goes into ``hello``."""
        if max_message_bytes < 1024:
            raise ValueError(f"PolicyServer: max_message_bytes must be >= 1024, got {max_message_bytes}")
        self.policy = policy.eval()
        self.host, self.port = host, int(port)
        self.max_message_bytes = int(max_message_bytes)
        self.dt = float(dt) if dt is not None else 1.0 / float(policy.features.fps)
        self.spec = ObsSpec.from_features(policy.features, int(policy.config.n_obs_steps))
        self.metadata = dict(metadata or {})
        try:
            pack(self.hello())
        except TypeError as e:
            raise ValueError(f"PolicyServer: metadata must hold plain values (str, numbers, lists, dicts): {e}") from None
        self._lock = threading.Lock()  # one forward pass at a time
        self._started = time.monotonic()
        self.stats = {"clients": 0, "connections": 0, "requests": 0, "errors": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # --- lifecycle ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM (the ``robopolicy-serve`` entry point)."""
        asyncio.run(self._main(handle_signals=True))

    def start(self, timeout_s: float = 10.0) -> "PolicyServer":
        """Serve from a background thread (tests, benchmarks); returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("PolicyServer.start: already started")
        self._thread = threading.Thread(target=self._run_thread, name="policy-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"PolicyServer did not start within {timeout_s} s")
        if self._startup_error is not None:
            raise self._startup_error
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close every connection and the listening socket; wait for the server thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def __enter__(self) -> "PolicyServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run_thread(self) -> None:
        try:
            asyncio.run(self._main(handle_signals=False))
        except BaseException as e:  # surfaced by start()
            self._startup_error = e
            self._ready.set()

    async def _main(self, handle_signals: bool) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, lambda: self._stop.done() or self._stop.set_result(None))
        # Frames up to 4x the limit are read and answered with an "oversized" error; larger ones
        # make websockets drop that connection without buffering them.
        async with serve(self._handler, self.host, self.port, max_size=4 * self.max_message_bytes,
                         compression=None, process_request=self._process_request) as server:
            self.port = int(server.sockets[0].getsockname()[1])
            log.info("serving %s (%s) on %s", type(self.policy).__name__, self.spec.to_dict(), self.url)
            self._ready.set()
            await self._stop

    # --- HTTP health probe --------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Any) -> Any:
        if request.path == "/healthz":
            return connection.respond(HTTPStatus.OK, json.dumps(self.health()) + "\n")
        return None

    def health(self) -> dict[str, Any]:
        return {"ok": True, "uptime_s": time.monotonic() - self._started,
                "policy": getattr(self.policy, "registry_name", type(self.policy).__name__), **self.stats}

    def hello(self) -> dict[str, Any]:
        """What a client needs to know before sending observations."""
        return {"type": "hello", "server": "robopolicy", "policy": getattr(self.policy, "registry_name", ""),
                "spec": self.spec.to_dict(), "action_dim": int(self.policy.features.action_dim),
                "n_action_steps": int(self.policy.config.n_action_steps), "dt": self.dt,
                "fps": float(self.policy.features.fps), "max_message_bytes": self.max_message_bytes,
                "metadata": self.metadata}

    # --- one connection -----------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        session = _Session()
        self.stats["clients"] += 1
        self.stats["connections"] += 1
        peer = ws.remote_address
        log.info("client %s connected (%d now)", peer, self.stats["clients"])
        try:
            await ws.send(pack(self.hello()))
            async for message in ws:
                reply = await self._reply(session, message)
                await ws.send(self._pack_reply(reply))
        except ConnectionClosed:
            pass
        finally:
            self.stats["clients"] -= 1
            log.info("client %s disconnected after %d requests", peer, session.requests)

    def _pack_reply(self, reply: dict[str, Any]) -> bytes:
        try:
            return pack(reply)
        except Exception as e:  # a reply we cannot encode is our bug: say so, keep serving
            self.stats["errors"] += 1
            log.exception("could not encode a reply")
            return pack(error_message("internal", f"server could not encode its reply: {e}", reply.get("id")))

    async def _reply(self, session: _Session, message: Any) -> dict[str, Any]:
        t_recv = time.perf_counter()
        self.stats["requests"] += 1
        session.requests += 1
        rid = None
        try:
            msg = unpack(message, self.max_message_bytes)
            rid = msg.get("id")
            if rid is not None and (not isinstance(rid, int) or isinstance(rid, bool)):
                raise ProtocolError("bad_message", f"'id' must be an integer, got {type(rid).__name__}")
            kind = msg["type"]
            if kind == "infer":
                reply = await asyncio.to_thread(self._infer, session, msg, t_recv)
            elif kind == "reset":
                reply = await asyncio.to_thread(self._reset, session, msg)
            elif kind == "health":
                reply = {"type": "health", **self.health()}
            elif kind == "hello":
                reply = self.hello()
            else:
                raise ProtocolError("unknown_type", f"unknown message type {kind!r}; known: infer, reset, health, hello")
        except ProtocolError as e:
            self.stats["errors"] += 1
            return error_message(e.code, str(e), rid)
        except Exception as e:  # the policy failed on valid input: report, keep serving
            self.stats["errors"] += 1
            log.exception("request failed")
            return error_message("internal", f"{type(e).__name__}: {e}", rid)
        reply["id"] = rid
        return reply

    def _reset(self, session: _Session, msg: dict[str, Any]) -> dict[str, Any]:
        n_envs = msg.get("n_envs", 1)
        if not isinstance(n_envs, int) or isinstance(n_envs, bool) or not 1 <= n_envs <= MAX_ENVS:
            raise ProtocolError("bad_message", f"'n_envs' must be an integer in [1, {MAX_ENVS}], got {n_envs!r}")
        with self._lock:
            session.source = PolicySource(self.policy, n_envs=n_envs, dt=self.dt)
            session.source.reset()
        return {"type": "reset", "n_envs": n_envs}

    def _infer(self, session: _Session, msg: dict[str, Any], t_recv: float) -> dict[str, Any]:
        t_obs = msg.get("t_obs", 0.0)
        if not isinstance(t_obs, (int, float)) or isinstance(t_obs, bool) or not math.isfinite(t_obs):
            raise ProtocolError("bad_message", f"'t_obs' must be a finite number, got {t_obs!r}")
        n_envs = session.source.n_envs if session.source is not None else None
        try:
            window = self.spec.check_window(msg.get("obs"), n_envs)
            n_envs = next(iter(window.values())).shape[0]
            if n_envs > MAX_ENVS:
                raise ValueError(f"batch of {n_envs} envs exceeds the server's limit of {MAX_ENVS}")
            task = self.spec.check_task(msg.get("task"), n_envs)
        except ValueError as e:
            raise ProtocolError("wrong_shape", str(e)) from None
        t_ready = time.perf_counter()
        with self._lock:
            t_start = time.perf_counter()
            if session.source is None:  # no reset sent: start a session for this batch size
                session.source = PolicySource(self.policy, n_envs=n_envs, dt=self.dt)
                session.source.reset()
            chunk = session.source.infer_window(window, task, float(t_obs))
        t_done = time.perf_counter()
        info = {k: v for k, v in chunk.info.items() if isinstance(v, (bool, int, float, str))}
        return {"type": "chunk", "actions": chunk.actions.astype("float32", copy=False), "t_obs": chunk.t_obs,
                "dt": chunk.dt, "info": info,
                "timing": {"decode_s": t_ready - t_recv, "wait_s": t_start - t_ready, "infer_s": t_done - t_start,
                           "server_s": t_done - t_recv}}
