import dataclasses

import pytest

from robopolicy.config_utils import from_dict, to_dict


@dataclasses.dataclass
class Inner:
    a: int = 1
    dims: tuple[int, ...] = (64, 128)


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    scale: float | None = None
    names: list[str] = dataclasses.field(default_factory=list)


def test_round_trip_nested_dataclass():
    cfg = Outer(Inner(3, (8, 16, 32)), 0.5, ["x"])
    d = to_dict(cfg)
    assert d == {"inner": {"a": 3, "dims": [8, 16, 32]}, "scale": 0.5, "names": ["x"]}
    back = from_dict(Outer, d)
    assert back == cfg and isinstance(back.inner.dims, tuple)


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="unknown config key.*'bogus'"):
        from_dict(Outer, {"bogus": 1})
