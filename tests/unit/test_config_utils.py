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


def test_unknown_keys_names_keys_added_to_a_structured_config():
    from omegaconf import OmegaConf, open_dict

    from robopolicy.config_utils import to_object, unknown_keys

    @dataclasses.dataclass
    class WithDict:
        inner: Inner = dataclasses.field(default_factory=Inner)
        extra: dict = dataclasses.field(default_factory=dict)

    cfg = OmegaConf.structured(WithDict)
    assert unknown_keys(cfg) == []
    with open_dict(cfg.inner):  # what Hydra's +key= does
        cfg.inner.aa = 2
        cfg.extra.anything = 1  # a dict field takes any key
    assert unknown_keys(cfg) == ["unknown config key inner.aa: Inner has no field 'aa' (did you mean inner.a?)"]
    assert OmegaConf.to_object(cfg).inner.a == 1  # OmegaConf alone accepts it
    with pytest.raises(ValueError, match="unknown config key inner.aa"):
        to_object(cfg)


def test_suite_and_device_checks_name_the_valid_choices():
    from robopolicy.config_utils import check_device, check_suite, suites_text

    check_suite("pushblock")
    check_suite("metaworld/mt1/push-v3")
    with pytest.raises(ValueError, match=r"env='robosuite/lifts' is not a task suite \(did you mean robosuite/lift\?\)"):
        check_suite("robosuite/lifts")
    assert "metaworld/mt1/<task>, metaworld/mt10" in suites_text(tasks=False)
    assert "push-v3" in suites_text() and "push-v3" not in suites_text(tasks=False)
    for ok in ("auto", "cpu", "cuda", "cuda:1"):
        check_device(ok)
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:<N>; got 'gpu'"):
        check_device("gpu")
