"""robopolicy.eval.sweep: the settings table and the checkpoint family check."""

from __future__ import annotations

import json

import pytest

from robopolicy.eval.sweep import checkpoint_meta, sweep_table


def _res(rate, tasks=None):
    r = {"success_rate": rate, "ci95": [rate - 0.1, rate + 0.05], "episodes": 20, "mean_length": 87.4,
         "latency": {"p50_s": 0.0123}}
    r["tasks"] = tasks or {"push-v3": {"success_rate": rate}}
    return r


def test_single_task_table_has_one_row_per_setting():
    rows = [{"label": "steps_per_act=1", "cost": 1, "res": _res(0.5)},
            {"label": "steps_per_act=4", "cost": 4, "res": _res(0.9)}]
    md = sweep_table(rows, "setting", "denoiser evals / control step").splitlines()
    assert md[0] == ("| setting | denoiser evals / control step | success | 95% CI | episodes | mean length "
                     "| policy call p50 (ms) |")
    assert md[2] == "| steps_per_act=1 | 1 | 50% | 40%-55% | 20 | 87 | 12.3 |"
    assert md[3].startswith("| steps_per_act=4 | 4 | 90% |") and len(md) == 4


def test_multi_task_table_adds_a_column_per_task():
    tasks = {"a": {"success_rate": 1.0}, "b": {"success_rate": 0.25}}
    md = sweep_table([{"label": "12 rounds", "cost": 12, "res": _res(0.625, tasks)}], "decoding", "evals").splitlines()
    assert md[0].endswith("| a | b |") and md[1].count("---") == 9
    assert md[2].endswith("| 100% | 25% |")


def test_checkpoint_of_another_family_is_refused_and_its_env_is_read(tmp_path):
    step = tmp_path / "run" / "step_00000010"
    step.mkdir(parents=True)
    (step / "meta.json").write_text(json.dumps({"policy": "diffusion", "step": 10}))
    (tmp_path / "run" / "last").write_text("step_00000010")
    with pytest.raises(SystemExit, match="holds a 'diffusion' policy, not sdp"):
        checkpoint_meta(tmp_path / "run", "sdp")
    with pytest.raises(SystemExit, match="no config.yaml naming its env"):
        checkpoint_meta(tmp_path / "run", "diffusion")
    (step / "config.yaml").write_text("env: metaworld/mt1/reach-v3\nsteps: 10\n")
    got_step, meta = checkpoint_meta(tmp_path / "run", "diffusion")
    assert got_step == step and meta["env"] == "metaworld/mt1/reach-v3"


def test_reuse_reads_a_finished_setting_and_runs_the_rest(tmp_path, monkeypatch):
    """--shard processes write each setting's eval_info.json; the table-writing run reads those
    (same episode count only) and evaluates what is missing."""
    import robopolicy.eval.job as job
    from robopolicy.eval.job import EvalJobConfig, default_eval_dir
    from robopolicy.eval.sweep import sweep

    step = tmp_path / "step_00000010"
    step.mkdir()
    (step / "config.yaml").write_text("env: metaworld/mt1/reach-v3\n")
    done = default_eval_dir(step, "metaworld/mt1/reach-v3", episodes=5, policy_overrides={"decode_rounds": 2})
    done.mkdir(parents=True)
    (done / "eval_info.json").write_text(json.dumps(_res(0.8, {"reach-v3": {"success_rate": 0.8, "episodes": 5}})))
    ran = []

    def fake_run_eval(cfg: EvalJobConfig, progress: bool = True):
        ran.append(dict(cfg.policy_overrides))
        return _res(0.1, {"reach-v3": {"success_rate": 0.1, "episodes": cfg.episodes}})

    monkeypatch.setattr(job, "run_eval", fake_run_eval)
    settings = [("2 rounds", {"decode_rounds": 2}, 2), ("4 rounds", {"decode_rounds": 4}, 4)]
    rows = sweep(step, settings, episodes=5, reuse=True)
    assert [r["res"]["success_rate"] for r in rows] == [0.8, 0.1] and ran == [{"decode_rounds": 4}]
    ran.clear()
    sweep(step, settings, episodes=7, reuse=True)  # another episode count: nothing is reused
    assert ran == [{"decode_rounds": 2}, {"decode_rounds": 4}]
    ran.clear()
    sweep(step, settings[:1], episodes=5)  # without reuse, always evaluated
    assert ran == [{"decode_rounds": 2}]
