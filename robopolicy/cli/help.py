"""``--help`` for the entry points: each config field with its one-line doc, read from the
dataclass source (the attribute docstrings under each field), so the help never drifts from it.

Registered as the Hydra help config ``hydra/help=robopolicy`` (configs/*.yaml select it); the
field list is built only when ``--help`` is asked for, the other runs get a short placeholder.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import textwrap
import typing
from typing import Any

from hydra.core.config_store import ConfigStore


def field_docs(cls: type, prefix: str = "", overrides: dict[str, type] | None = None) -> list[tuple[str, str]]:
    """(dotted field name, its docstring on one line) for dataclass ``cls``, nested dataclass
    fields included (``eval.episodes``); ``overrides`` gives the class of a field typed ``Any``
    (``{"policy": DiffusionConfig}``). A field without a docstring gets ''."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's docstring wins over its base's
        if dataclasses.is_dataclass(klass):
            docs.update(_attribute_docstrings(klass))
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve here: no nesting for it
        hints = {}
    flat, nested = [], []  # a level's plain fields first, then each nested config with its fields
    for f in dataclasses.fields(cls):
        sub = (overrides or {}).get(f.name) or _dataclass_in(hints.get(f.name))
        if sub is None:
            flat.append((prefix + f.name, docs.get(f.name, "")))
        else:
            nested += [(prefix + f.name, docs.get(f.name, "")), *field_docs(sub, f"{prefix}{f.name}.")]
    return flat + nested


def _attribute_docstrings(klass: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # no source (a frozen or generated class)
        return {}
    body = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)).body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _dataclass_in(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):  # Optional[SomeConfig]
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def fields_text(cls: type, overrides: dict[str, type] | None = None) -> str:
    rows = field_docs(cls, overrides=overrides)
    width = min(max(len(name) for name, _ in rows), 34)
    return "\n".join(f"  {name:<{width}}  {doc}".rstrip() for name, doc in rows)


def register_help(app: str, usage: str, cls: type, *, full: bool | None = None,
                  overrides: dict[str, type] | None = None, extra: str = "") -> None:
    """Store ``hydra/help=robopolicy`` for entry point ``app``: usage, config groups, every
    field of ``cls`` with its doc, ``extra`` (e.g. the suite names), then the composed config.
    ``full=None``: build the field list only when ``--help`` is on the command line."""
    if full is None:
        full = "--help" in sys.argv[1:]
    sections = [usage.strip()]
    if full:
        sections.append("== Fields (key=value; the values in effect are under Config) ==\n"
                        + fields_text(cls, overrides))
        if extra:
            sections.append(extra.strip())
    else:
        sections.append(f"(the field list: {app} --help)")
    template = "\n\n".join([*map(_literal, sections), "== Configuration groups (group=option) ==\n$APP_CONFIG_GROUPS",
                             "== Config ==\n$CONFIG", "Hydra's own options: --hydra-help"])
    ConfigStore.instance().store(group="hydra/help", name="robopolicy", provider="robopolicy",
                                 node={"app_name": app, "header": "", "footer": "", "template": template})


def _literal(text: str) -> str:
    """``text`` as it should print through Hydra's template: ``$`` is string.Template's escape
    (``$$``), ``${`` OmegaConf's interpolation (``\\${``)."""
    return text.replace("$", "$$").replace("${", "\\${")
