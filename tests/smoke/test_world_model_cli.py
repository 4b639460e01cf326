"""robopolicy-train-wm end to end (play data recorded, a few steps, refuses to overwrite, resumes)
and robopolicy-eval with world_model=: a policy evaluated for one episode inside the model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY_WM = ["model.hidden_dim=16", "model.depth=1", "model.head_hidden_dim=8", "model.head_depth=1",
           "model.noise_embed_dim=8"]
TINY_DP = {"down_dims": [16, 32], "kernel_size": 3, "n_groups": 4, "step_embed_dim": 16, "horizon": 8,
           "n_action_steps": 4, "noise": {"num_train_timesteps": 20, "num_inference_steps": 4}}


def _env():
    return dict(os.environ, MUJOCO_GL="egl", OMP_NUM_THREADS="1")


def _train_wm(tmp: Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "robopolicy.cli.train_wm", "env=pushblock", "episodes=3", f"dataset={tmp / 'play'}",
           f"output_dir={tmp / 'ckpt'}", "run_name=wm", f"steps={steps}", "batch_size=16", "save_every=3",
           "log_every=3", "warmup_steps=1", "record_workers=0", "device=cpu", *TINY_WM, *extra]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)


def _step(run: Path) -> int:
    return json.loads((run / (run / "last").read_text().strip() / "meta.json").read_text())["step"]


@pytest.fixture(scope="module")
def wm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wm")
    out = _train_wm(tmp, 6)
    assert out.returncode == 0, out.stdout + out.stderr
    return tmp


def test_train_wm_records_trains_refuses_overwrite_and_resumes(wm_run):
    run = wm_run / "ckpt" / "wm"
    info = json.loads((wm_run / "play" / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 3 and "next.reward" in info["features"]
    assert _step(run) == 6 and (run / "tb").is_dir()
    again = _train_wm(wm_run, 9)
    assert again.returncode != 0 and "resume=true" in again.stdout + again.stderr
    resumed = _train_wm(wm_run, 9, "resume=true")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from" in resumed.stdout + resumed.stderr and _step(run) == 9
    bad = _train_wm(wm_run, 9, "model.bogus=1")
    assert bad.returncode != 0 and "bogus" in bad.stdout + bad.stderr


def test_eval_runs_a_policy_inside_the_world_model(wm_run):
    from robopolicy.config_utils import from_dict
    from robopolicy.policies.diffusion.config import DiffusionConfig
    from robopolicy.train.checkpoint import save_checkpoint
    from robopolicy.train.run import build_policy
    from robopolicy.data import LeRobotDataset

    ds = LeRobotDataset(wm_run / "play", camera_keys=[])
    policy = build_policy("diffusion", from_dict(DiffusionConfig, TINY_DP), ds.feature_spec(), ds.training_stats())
    save_checkpoint(wm_run / "policy", 1, policy, None, None, {"env": "pushblock", "obs": "state"})
    out_dir = wm_run / "eval"
    cmd = [sys.executable, "-m", "robopolicy.cli.eval", f"checkpoint={wm_run / 'policy'}",
           f"world_model={wm_run / 'ckpt' / 'wm'}", "episodes=1", "n_envs=1", "videos=0", "device=cpu",
           f"output={out_dir}"]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    info = json.loads((out_dir / "eval_info.json").read_text())
    assert info["suite"] == "world_model:pushblock" and info["episodes"] == 1
    ep = info["per_episode"][0]
    assert 1 <= ep["length"] <= info["tasks"]["pushblock"]["max_episode_steps"]
