"""scripts/bench_main_job.py: which README line it runs, where it splits install from the job, and
the success rate it reads back; scripts/profile_policy.py's op groups."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_command_is_the_main_job_line_of_the_real_readme():
    mj = _load("bench_main_job")
    line = mj.readme_command((SCRIPTS.parent / "README.md").read_text())
    assert "robopolicy-train" in line and "#" not in line
    install, job = mj.split_install(line)
    assert install.startswith("pip install") and job.startswith("robopolicy-train")


def test_readme_command_errors_name_the_problem():
    mj = _load("bench_main_job")
    with pytest.raises(ValueError, match="no ```bash block"):
        mj.readme_command("# title\nno code here\n")
    with pytest.raises(ValueError, match="no robopolicy-train line"):
        mj.readme_command("```bash\npython -m pytest\n```\n")
    with pytest.raises(ValueError, match="expected"):
        mj.split_install("robopolicy-train")


def test_last_success_reads_the_jobs_final_line():
    mj = _load("bench_main_job")
    out = ("eval: success 40%\n"
           "success rate 94.0% over 50 episodes (95% CI 83.8%-97.9%) after 2000 steps; run folder x\n")
    assert mj.last_success(out) == 94.0
    assert mj.last_success("trained 10 steps (eval.episodes=0: not evaluated)") is None


def test_profile_groups():
    prof = _load("profile_policy")
    assert prof.group_of("aten::convolution_backward") == "convolution backward"
    assert prof.group_of("aten::_slow_conv2d_forward") == "convolution forward"
    assert prof.group_of("aten::native_group_norm_backward") == "GroupNorm (fwd + bwd)"
    assert prof.group_of("aten::mish_backward") == "Mish (fwd + bwd)"
    assert prof.group_of("aten::_fused_adamw_") == "optimizer (AdamW)"
    assert prof.group_of("aten::addmm") == "matmul / linear"
    assert prof.group_of("aten::empty") == "tensor bookkeeping (empty, copy, view, cat, ...)"
    assert prof.group_of("aten::addcmul") == "elementwise / other"


def test_time_to_success_plans_the_schedule_and_reads_the_final_line():
    tts = _load("bench_time_to_success")
    assert tts.plan_steps(10.0, 5, 0.95) == (2850, 285)
    assert tts.plan_steps(10.0, 20, 0.95) == (11400, 500)  # warm-up capped
    line = ("success rate 94.0% over 50 episodes (95% CI 83.8%-97.9%) after 2850 steps, 4.8 min of training; "
            "run folder x")
    res = tts.parse_final("train: ...\n" + line)
    assert res["ci95"] == pytest.approx([0.838, 0.979])
    assert {k: v for k, v in res.items() if k != "ci95"} == {"success_rate": 0.94, "episodes": 50, "train_steps": 2850,
                                                            "train_minutes": 4.8}
    assert tts.parse_final("trained 300 steps, 0.5 min of training (eval.episodes=0: not evaluated)") is None
    rows = [{"policy": "sdp", "minutes": 5, "success_rate": 0.5, "ci95": [0.36, 0.64], "train_steps": 2000}]
    text = tts.table(rows, [5, 10])
    assert "| sdp | 50% (36%-64%), 2000 steps | not run |" in text
