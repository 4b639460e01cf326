import msgpack
import numpy as np
import pytest

from robopolicy.deploy.obs_spec import ObsSpec
from robopolicy.deploy.protocol import PROTOCOL_VERSION, ProtocolError, pack, unpack
from robopolicy.types import IMAGE_PREFIX, STATE_KEY


def test_round_trip_keeps_arrays_exact():
    arrays = {"f32": np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32),
              "u8": np.arange(24, dtype=np.uint8).reshape(2, 3, 4)[:, ::2],  # non-contiguous
              "b": np.array([True, False]), "f64": np.array(3.5), "i64": np.array([-(2**40)])}
    msg = unpack(pack({"type": "x", "id": 3, "obs": arrays, "task": ["a", "b"], "t": np.float32(1.5), "s": (1, 2)}))
    assert msg["v"] == PROTOCOL_VERSION and msg["id"] == 3 and msg["task"] == ["a", "b"]
    assert msg["t"] == 1.5 and msg["s"] == [1, 2]
    for k, v in arrays.items():
        out = msg["obs"][k]
        assert out.dtype == v.dtype and out.shape == v.shape and out.flags.writeable
        np.testing.assert_array_equal(out, v)


def _ext(dtype, shape, raw):
    return msgpack.ExtType(1, msgpack.packb([dtype, shape, raw]))


@pytest.mark.parametrize("data, code, match", [
    (b"\xc1\x00\x01", "bad_message", "not a msgpack message"),
    (msgpack.packb([1, 2]), "bad_message", "must be a msgpack map"),
    (msgpack.packb({"type": "infer"}), "version", "version None"),
    (msgpack.packb({"v": 99, "type": "infer"}), "version", "version 99"),
    (msgpack.packb({"v": 1, "type": 5}), "bad_message", "string 'type'"),
    (msgpack.packb({"v": 1, "type": "infer", "a": _ext("|O", [1], b"\0" * 8)}), "bad_message", "dtype '|O'"),
    (msgpack.packb({"v": 1, "type": "infer", "a": _ext("<f4", [3], b"\0" * 8)}), "bad_message", "needs 12 bytes"),
    (msgpack.packb({"v": 1, "type": "infer", "a": _ext("<f4", [-1], b"")}), "bad_message", "shape"),
    (msgpack.packb({"v": 1, "type": "infer", "a": _ext("<f4", [1] * 9, b"\0" * 4)}), "bad_message", "shape"),
    (msgpack.packb({"v": 1, "type": "infer", "a": msgpack.ExtType(7, b"xx")}), "bad_message", "extension type 7"),
    (msgpack.packb({"v": 1, "type": "infer", "a": msgpack.ExtType(1, b"\xc1")}), "bad_message", "malformed array"),
    ("a text frame", "bad_message", "binary msgpack frame"),
    (b"\x80" * 5000, "oversized", "5000 bytes exceeds the limit of 4096"),
])
def test_malformed_messages_raise_protocol_errors(data, code, match):
    with pytest.raises(ProtocolError, match=match) as e:
        unpack(data, max_bytes=4096)
    assert e.value.code == code


def test_pack_refuses_what_it_cannot_send():
    with pytest.raises(TypeError, match="dtype object"):
        pack({"a": np.array([object()])})
    with pytest.raises(TypeError, match="cannot encode a set"):
        pack({"a": {1, 2}})


def test_obs_spec_checks_windows():
    spec = ObsSpec({STATE_KEY: (3,), IMAGE_PREFIX + "cam": (4, 5, 3)}, n_obs_steps=2)
    assert ObsSpec.from_dict(spec.to_dict()) == spec
    good = {STATE_KEY: np.zeros((1, 2, 3), np.float64), IMAGE_PREFIX + "cam": np.zeros((1, 2, 4, 5, 3), np.uint8)}
    out = spec.check_window(good)
    assert out[STATE_KEY].dtype == np.float32
    bad_cases = [
        ({**good, "extra": np.zeros(1)}, "unexpected \\['extra'\\]"),
        ({STATE_KEY: good[STATE_KEY]}, "missing \\['observation.images.cam'\\]"),
        ({**good, STATE_KEY: np.zeros((1, 3, 3))}, r"has shape \(1, 3, 3\), expected \(1, 2, 3\)"),
        ({**good, STATE_KEY: [1, 2]}, "is a list, expected an array"),
        ({**good, STATE_KEY: np.full((1, 2, 3), np.nan)}, "non-finite"),
        ({**good, IMAGE_PREFIX + "cam": np.zeros((1, 2, 4, 5, 3), np.float32)}, "expected uint8"),
        ({**good, STATE_KEY: np.zeros((2, 2, 3))}, r"expected \(1, 2, 3\)"),
        ("nope", "must be a map"),
    ]
    for window, match in bad_cases:
        with pytest.raises(ValueError, match=match):
            spec.check_window(window, n_envs=1)
    with pytest.raises(ValueError, match="language-conditioned"):
        ObsSpec({STATE_KEY: (3,)}, 1, use_language=True).check_task(None, 1)
    with pytest.raises(ValueError, match="list of 2 strings"):
        spec.check_task(["a"], 2)
    assert spec.check_task(["a", "b"], 2) == ["a", "b"] and spec.check_task(None, 2) is None
    with pytest.raises(ValueError, match="neither a state nor a camera"):
        ObsSpec({}, 1)
