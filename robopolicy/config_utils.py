"""Dataclass configs: <-> plain dicts (a checkpoint's config is rebuilt with no Hydra), strict
conversion from a composed OmegaConf config, and the checks several configs share."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from typing import Any


def to_dict(cfg: Any) -> Any:
    """A dataclass (possibly nested, possibly an OmegaConf node) as plain dicts/lists/scalars."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, (DictConfig, ListConfig)):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def from_dict(cls: type, data: dict | None) -> Any:
    """Build dataclass ``cls`` from a dict; unknown keys are an error that names them."""
    if data is None:
        return cls()
    if dataclasses.is_dataclass(data):
        data = to_dict(data)
    if not isinstance(data, dict):
        data = to_dict(data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config key(s) {unknown}; valid keys: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        kwargs[f.name] = _coerce(hints.get(f.name, Any), data[f.name])
    return cls(**kwargs)


def _coerce(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value)
    if origin is typing.Union or (origin is not None and str(origin) == "types.UnionType"):
        for a in args:
            if a is type(None):
                continue
            if dataclasses.is_dataclass(a) and isinstance(value, dict):
                return from_dict(a, value)
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value) if len(inner) == 1 else value
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        return tuple(value)
    if origin is list and isinstance(value, (list, tuple)):
        return [_coerce(args[0], v) if args else v for v in value]
    return value


def to_object(cfg: Any) -> Any:
    """``OmegaConf.to_object`` that refuses keys the schema does not declare.

    Hydra's ``+key=value`` / ``++key=value`` add a key to a structured config without complaint
    (``key=value`` alone is refused), and ``to_object`` then drops it or sets it as a stray
    attribute the dataclass never reads: the setting would be silently ignored."""
    from omegaconf import OmegaConf

    unknown = unknown_keys(cfg)
    if unknown:
        raise ValueError("; ".join(unknown))
    return OmegaConf.to_object(cfg)


def unknown_keys(node: Any, prefix: str = "") -> list[str]:
    """One message per key of an OmegaConf node (recursively) that its dataclass type lacks."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    out: list[str] = []
    if isinstance(node, DictConfig):
        if node._is_none() or node._is_missing():
            return out
        typ = OmegaConf.get_type(node)
        if dataclasses.is_dataclass(typ):
            names = [f.name for f in dataclasses.fields(typ)]
            for k in node.keys():
                if k not in names:
                    close = difflib.get_close_matches(str(k), names, n=1)
                    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
                    out.append(f"unknown config key {prefix}{k}: {typ.__name__} has no field {k!r}{hint}")
        for k in node.keys():
            out += unknown_keys(node._get_node(k), f"{prefix}{k}.")
    elif isinstance(node, ListConfig) and not (node._is_none() or node._is_missing()):
        for i in range(len(node)):
            out += unknown_keys(node._get_node(i), f"{prefix}{i}.")
    return out


@functools.lru_cache(maxsize=1)
def _suites() -> tuple[str, ...]:
    from envs import list_suites

    return tuple(list_suites())


def suites_text(tasks: bool = True) -> str:
    """Every suite name, Meta-World's single tasks folded into one entry ``metaworld/mt1/<task>``
    (followed by the task names when ``tasks``)."""
    mt1 = [s.split("/", 2)[2] for s in _suites() if s.startswith("metaworld/mt1/")]
    rest = [s for s in _suites() if not s.startswith("metaworld/mt1/")]
    folded = "metaworld/mt1/<task>" + (f" (<task>: {' '.join(mt1)})" if tasks else "")
    return ", ".join(rest[:1] + [folded] + rest[1:])


def check_suite(name: str, field: str = "env") -> None:
    """ValueError naming the valid suites unless ``name`` is one ``envs.make_suite`` accepts."""
    if name in _suites():
        return
    close = difflib.get_close_matches(name, _suites(), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(f"{field}={name!r} is not a task suite{hint}; the suites: {suites_text(tasks=False)} "
                     f"(robopolicy-train --help or envs.list_suites() lists every name)")


def check_device(name: str, field: str = "device") -> None:
    """ValueError unless ``name`` is ``auto`` or a device torch can name (cpu, cuda, cuda:1, ...)."""
    if name == "auto":
        return
    import torch

    try:
        torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{field} must be auto, cpu, cuda or cuda:<N>; got {name!r}") from None
