"""A name -> class registry per kind ("policy", ...): ``@register("policy", "diffusion")`` and
``get("policy", "diffusion")``. Replaces if/elif factories; contract tests iterate ``names()``."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")
_REGISTRY: dict[str, dict[str, type]] = {}


def register(kind: str, name: str) -> Callable[[type[T]], type[T]]:
    def deco(cls: type[T]) -> type[T]:
        table = _REGISTRY.setdefault(kind, {})
        if name in table and table[name] is not cls:
            raise KeyError(f"{kind} {name!r} is already registered to {table[name].__qualname__}")
        table[name] = cls
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return deco


def get(kind: str, name: str) -> type:
    _ensure_builtin_imported()
    table = _REGISTRY.get(kind, {})
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; registered: {sorted(table)}")
    return table[name]


def names(kind: str) -> list[str]:
    _ensure_builtin_imported()
    return sorted(_REGISTRY.get(kind, {}))


def _ensure_builtin_imported() -> None:
    # Importing the policies package registers every built-in family.
    import robopolicy.policies  # noqa: F401
