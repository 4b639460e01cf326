"""scripts/bench_success.py's table: single-task rows as before; a multi-task suite keeps one row
per task (from the evaluation summary) plus the suite's average."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_success.py"


def _table():
    spec = importlib.util.spec_from_file_location("bench_success", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.table


DP = {"sampler": "ddim", "num_inference_steps": 10, "n_action_steps": 8}


def _row(task, rate, tasks=None, inference=DP):
    r = {"task": task, "success_rate": rate, "ci95": [0.1, 0.9], "episodes": 20, "mean_length": 100.0,
         "train_steps": 500, "train_minutes": 3.0, "overrides": ["policy=diffusion", "episodes=50"],
         "run_dir": "checkpoints/nowhere", "inference_config": inference}
    if tasks:
        r["tasks"] = {t: {"success_rate": s, "ci95": [0.0, 1.0], "episodes": 2, "mean_length": 90.0} for t, s in tasks.items()}
    return r


def test_single_task_rows_say_their_inference_and_the_mean_names_what_it_averages():
    lines = _table()([_row("push-v3", 0.5), _row("reach-v3", 1.0, inference=None)])
    assert lines[2] == ("| push-v3 | 50 | 50% | 10%-90% | 20 | 100 | 500 | 3.0 | DDIM-10 chunks, 8 actions executed "
                        "per policy call |")
    # no recorded settings and no checkpoint of that run: said, not guessed
    assert lines[3].endswith("| 500 | 3.0 | not recorded |")
    assert lines[4] == "| **mean of 2 results** (push-v3, reach-v3) | | **75%** | | | | | | |" and len(lines) == 5
    assert len(_table()([_row("push-v3", 0.5)])) == 3  # one result: no mean row


def test_multi_task_suite_has_one_row_per_task_and_the_average():
    lines = _table()([_row("metaworld/mt10", 0.25, {"reach-v3": 0.5, "push-v3": 0.0})])
    assert lines[2] == "| metaworld/mt10: reach-v3 | 50 | 50% | 0%-100% | 2 | 90 | | | |"
    assert lines[3] == "| metaworld/mt10: push-v3 | 50 | 0% | 0%-100% | 2 | 90 | | | |"
    assert lines[4].startswith("| metaworld/mt10 (average of 2 tasks) | 50 | 25% |")
    assert lines[4].endswith("| DDIM-10 chunks, 8 actions executed per policy call |") and len(lines) == 5


def test_a_row_without_recorded_settings_reads_its_checkpoint_and_reevaluation(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_success", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from robopolicy.deploy.testing import save_untrained_checkpoint

    monkeypatch.setattr(mod, "ROOT", tmp_path)
    step = save_untrained_checkpoint(tmp_path / "checkpoints" / "run")  # step 0, DDIM with the tiny config's 4 steps
    row = _row("pushblock", 0.5, inference=None)
    row.update(run_dir="checkpoints/run", train_steps=0,
               reevaluations=[{"policy_overrides": {"noise.num_inference_steps": 3}}])
    assert mod.row_inference(row) == {"sampler": "ddim", "num_inference_steps": 3, "n_action_steps": 4}
    row["train_steps"] = 900  # the folder holds another run than the one the row was trained to
    assert mod.row_inference(row) is None
    assert step.exists()


def test_comparison_section_per_task_and_average(tmp_path, monkeypatch):
    import json
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("bench_success", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    written = {}
    monkeypatch.setattr(mod, "write_section", lambda title, body: written.update({title: body}))
    for policy, tasks in (("ddvla", {"reach-v3": 0.5, "push-v3": 0.25}), ("diffusion", {"reach-v3": 0.75, "push-v3": 0.0})):
        d = tmp_path / "results" / f"{policy}_image_metaworld_mt10"
        d.mkdir(parents=True)
        row = _row("metaworld/mt10", sum(tasks.values()) / 2, tasks)
        row["episodes"] = 4
        (d / "metaworld_mt10.json").write_text(json.dumps(row))
    args = SimpleNamespace(policy="ddvla", compare="diffusion", obs="image")
    mod._write_comparison(args, "metaworld/mt10")
    (title, body), = written.items()
    assert title == "Success: ddvla vs diffusion, metaworld/mt10 (image observations)"
    assert "| reach-v3 | 50% | 75% | -25 pts |" in body and "| push-v3 | 25% | 0% | +25 pts |" in body
    assert "| **average** | **38%** (10%-90%) | **38%** (10%-90%) | +0 pts |" in body
    assert "(2 per task)" in body
    args.compare = "sdp"  # no result for that family: a message, not a half-written table
    with pytest.raises(SystemExit, match="sdp"):
        mod._write_comparison(args, "metaworld/mt10")


def test_single_task_comparison_lists_both_families_and_the_average():
    spec = importlib.util.spec_from_file_location("bench_success", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    a = {"reach-v3": _row("reach-v3", 0.8), "push-v3": _row("push-v3", 1.0)}
    b = {"reach-v3": _row("reach-v3", 0.9), "push-v3": _row("push-v3", 0.94)}
    lines = mod.task_comparison(a, b, ("ebt", "diffusion"))
    assert lines[0].startswith("| task | ebt | diffusion | difference |")
    assert lines[2] == "| reach-v3 | 80% (10%-90%) | 90% (10%-90%) | -10 pts | 500 / 500 |"
    assert lines[3] == "| push-v3 | 100% (10%-90%) | 94% (10%-90%) | +6 pts | 500 / 500 |"
    assert lines[4] == "| **average** | **90.0%** | **92.0%** | -2.0 pts | |"
