"""The policy server's wire format: versioned msgpack maps with numpy arrays as msgpack extensions.

Every message is one binary websocket frame holding a msgpack map with ``"v"`` (the protocol
version), ``"type"`` and, for requests, an ``"id"`` the reply repeats. Requests (client -> server):

* ``infer``  ``obs`` (key -> ``(B, n_obs_steps, *frame)`` array), ``task`` (str | [str] | nil),
  ``t_obs`` (float, the client's clock) -> ``chunk`` with ``actions`` ``(B, n, A)`` float32,
  ``t_obs``, ``dt``, ``timing`` (server seconds) and ``info``
* ``reset``  ``n_envs`` -> ``reset`` (the session's policy state starts over)
* ``health`` -> ``health`` (``ok``, uptime, clients, requests served, errors)
* ``hello``  -> ``hello`` (also sent unasked when a client connects: the policy's ``ObsSpec``,
  action size, control period, server limits)

A request the server cannot use gets ``{"type": "error", "code": ..., "error": <message>}`` and the
connection stays open. Torch-free: the client side imports this on the robot.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
"""Bumped on any incompatible change; both sides refuse a message of another version."""
NDARRAY_EXT = 1
"""msgpack extension code of a numpy array: packed ``[dtype.str, shape, raw bytes]``."""
MAX_NDIM = 8
REQUEST_TYPES = ("infer", "reset", "health", "hello")
ERROR_CODES = ("bad_message", "version", "oversized", "wrong_shape", "unknown_type", "internal")

# Plain numeric dtypes only: an object dtype would let a message build arbitrary Python objects.
_ALLOWED_DTYPES = {np.dtype(t).str: np.dtype(t) for t in (
    np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64,
    np.float16, np.float32, np.float64)}


class ProtocolError(ValueError):
    """A message that breaks the protocol; ``code`` is one of ``ERROR_CODES``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


# --- encoding ----------------------------------------------------------------------------------------
def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.str not in _ALLOWED_DTYPES:
            raise TypeError(f"cannot send an array of dtype {obj.dtype} (allowed: {sorted(_ALLOWED_DTYPES)})")
        arr = obj if obj.flags.c_contiguous else obj.copy(order="C")  # ascontiguousarray makes 0-d 1-d
        return msgpack.ExtType(NDARRAY_EXT, msgpack.packb([arr.dtype.str, list(arr.shape), arr.tobytes()]))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot encode a {type(obj).__name__} in a policy-server message")


def pack(msg: dict[str, Any]) -> bytes:
    """Encode a message (the version is added)."""
    return msgpack.packb({"v": PROTOCOL_VERSION, **msg}, default=_default, use_bin_type=True)


# --- decoding ----------------------------------------------------------------------------------------
def _ext_hook(code: int, data: bytes) -> Any:
    if code != NDARRAY_EXT:
        raise ProtocolError("bad_message", f"unknown msgpack extension type {code}")
    try:
        dtype_str, shape, raw = msgpack.unpackb(data, raw=False, use_list=True)
    except Exception as e:
        raise ProtocolError("bad_message", f"malformed array extension: {type(e).__name__}") from None
    if not isinstance(dtype_str, str) or dtype_str not in _ALLOWED_DTYPES:
        raise ProtocolError("bad_message", f"array dtype {dtype_str!r} is not allowed")
    if (not isinstance(shape, list) or len(shape) > MAX_NDIM
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise ProtocolError("bad_message", f"array shape {shape!r} is not a list of <= {MAX_NDIM} sizes")
    if not isinstance(raw, bytes):
        raise ProtocolError("bad_message", "array data is not bytes")
    dtype = _ALLOWED_DTYPES[dtype_str]
    n = 1
    for d in shape:
        n *= d
    if n * dtype.itemsize != len(raw):
        raise ProtocolError("bad_message", f"array of shape {tuple(shape)} and dtype {dtype} needs "
                            f"{n * dtype.itemsize} bytes, got {len(raw)}")
    # A writable copy: torch.from_numpy warns on (and must not alias) the message buffer.
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def unpack(data: Any, max_bytes: int | None = None) -> dict[str, Any]:
    """Decode one message; anything malformed raises ``ProtocolError`` (never another error)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("bad_message", f"expected a binary msgpack frame, got {type(data).__name__}")
    if max_bytes is not None and len(data) > max_bytes:
        raise ProtocolError("oversized", f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        msg = msgpack.unpackb(bytes(data), raw=False, ext_hook=_ext_hook,
                              strict_map_key=True)  # length limits derive from len(data)
    except ProtocolError:
        raise
    except Exception as e:  # msgpack raises many types (ExtraData, FormatError, StackError, ...)
        raise ProtocolError("bad_message", f"not a msgpack message ({type(e).__name__}: {e})"[:300]) from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", f"a message must be a msgpack map, got {type(msg).__name__}")
    v = msg.get("v")
    if v != PROTOCOL_VERSION:
        raise ProtocolError("version", f"protocol version {v!r} is not supported (this side speaks "
                            f"{PROTOCOL_VERSION})")
    if not isinstance(msg.get("type"), str):
        raise ProtocolError("bad_message", "a message needs a string 'type'")
    return msg


def error_message(code: str, text: str, request_id: Any = None) -> dict[str, Any]:
    return {"type": "error", "id": request_id, "code": code, "error": text}
