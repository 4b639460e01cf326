"""Layering: the CLI layer sits on top; nothing below it (train, eval, deploy, data, ...) imports it."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_nothing_below_the_cli_imports_it():
    offenders = {}
    for path in [*(ROOT / "robopolicy").rglob("*.py"), *(ROOT / "envs").rglob("*.py"), *(ROOT / "scripts").rglob("*.py")]:
        if (ROOT / "robopolicy" / "cli") in path.parents:
            continue
        bad = sorted(m for m in _imported_modules(path) if m == "robopolicy.cli.common" or
                     (m.startswith("robopolicy.cli") and path.is_relative_to(ROOT / "robopolicy")))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, offenders
    assert not (ROOT / "robopolicy" / "cli" / "common.py").exists()
