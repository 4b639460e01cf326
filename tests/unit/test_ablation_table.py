"""scripts/ablation_table.py: saved multi-task results side by side; rows that were evaluated
differently, single-task results and bad --row specs are refused."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ablation_table.py"


def _mod():
    spec = importlib.util.spec_from_file_location("ablation_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _result(tmp_path, name, rates, episodes=4, steps=100):
    r = {"success_rate": sum(rates.values()) / len(rates), "ci95": [0.2, 0.8], "episodes": episodes,
         "train_steps": steps, "command": "Command: `x`",
         "tasks": {t: {"success_rate": s} for t, s in rates.items()}}
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(r))
    return str(p)


def test_rows_side_by_side_per_task(tmp_path):
    m = _mod()
    a = _result(tmp_path, "a", {"reach": 0.5, "push": 1.0}, steps=300)
    b = _result(tmp_path, "b", {"reach": 1.0, "push": 0.0})
    lines = m.table(m.load_rows([f"masked={a}", f"own={b}"])).splitlines()
    assert lines[0] == "| variant | train steps | average | 95% CI | reach | push |"
    assert lines[2] == "| masked | 300 | **75%** | 20%-80% | 50% | 100% |"
    assert lines[3] == "| own | 100 | **50%** | 20%-80% | 100% | 0% |"


def test_refuses_mismatched_or_malformed_rows(tmp_path):
    m = _mod()
    a = _result(tmp_path, "a", {"reach": 0.5, "push": 1.0})
    other = _result(tmp_path, "b", {"reach": 0.5, "push": 1.0}, episodes=6)
    with pytest.raises(SystemExit, match="other tasks or episodes"):
        m.table(m.load_rows([f"a={a}", f"b={other}"]))
    with pytest.raises(SystemExit, match="LABEL=PATH"):
        m.load_rows(["no-equals-sign"])
    with pytest.raises(SystemExit, match="does not exist"):
        m.load_rows([f"x={tmp_path / 'missing.json'}"])
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"success_rate": 0.5}))
    with pytest.raises(SystemExit, match="single-task"):
        m.load_rows([f"s={single}"])
