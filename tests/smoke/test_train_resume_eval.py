"""The whole path: record -> train (killed with SIGKILL after a checkpoint) -> resume -> evaluate
one episode -> load_policy with no Hydra gives the same actions as the EMA policy that was saved."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TINY = [
    "policy.down_dims=[16,32]", "policy.kernel_size=3", "policy.n_groups=4", "policy.step_embed_dim=16",
    "policy.horizon=8", "policy.n_action_steps=4", "policy.noise.num_train_timesteps=20",
    "policy.noise.num_inference_steps=4",
]


def _train_cmd(tmp: Path, steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "robopolicy.cli.train", "env=pushblock", "obs=state", "episodes=3",
            f"dataset={tmp / 'data'}", f"output_dir={tmp / 'ckpt'}", "run_name=smoke", f"steps={steps}",
            "batch_size=16", "save_every=5", "log_every=5", "warmup_steps=2", "eval.episodes=1",
            "eval.n_envs=1", "eval.videos=0", *TINY, *extra]


def test_train_kill_resume_evaluate(tmp_path):
    env = dict(os.environ, MUJOCO_GL="egl", OMP_NUM_THREADS="1")
    # 1) a long run, killed hard once its first checkpoint is on disk
    proc = subprocess.Popen(_train_cmd(tmp_path, 100000), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    last = tmp_path / "ckpt" / "smoke" / "last"
    deadline = time.monotonic() + 240
    while not last.exists():
        assert proc.poll() is None, f"training exited early:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((tmp_path / "ckpt" / "smoke" / last.read_text().strip() / "meta.json").read_text())["step"]
    assert killed_at >= 5

    # 2) starting again without resume must refuse rather than overwrite the run
    out = subprocess.run(_train_cmd(tmp_path, killed_at + 5), env=env, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "resume=true" in out.stderr
    assert "Traceback" not in out.stderr

    # 3) resume continues from the checkpoint to the new step count, then evaluates one episode
    from omegaconf import OmegaConf

    from robopolicy.cli.configstore import register_configs
    from robopolicy.train.run import run_training

    register_configs()
    from hydra import compose, initialize_config_dir

    from robopolicy.cli.configstore import CONFIG_DIR

    # eval.episodes=0 trains only: no success rate, no evaluation folder
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[a for a in _train_cmd(tmp_path, killed_at + 2)[3:]]
                      + ["resume=true", "eval.episodes=0"])
    only = run_training(OmegaConf.to_object(cfg), "diffusion", progress=False)
    assert only["success_rate"] is None and only["train_steps"] == killed_at + 2
    # the whole run and this process, counted apart (the killed process trained killed_at steps)
    assert only["resumed_from_step"] == killed_at and only["steps_this_process"] == 2
    assert only["train_minutes"] > only["minutes_this_process"] > 0
    assert not list((tmp_path / "ckpt" / "smoke").glob("**/eval"))

    target = killed_at + 5
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[a for a in _train_cmd(tmp_path, target)[3:]] + ["resume=true"])
    result = run_training(OmegaConf.to_object(cfg), "diffusion", progress=False)
    assert result["train_steps"] == target
    assert result["episodes"] == 1 and 0.0 <= result["success_rate"] <= 1.0
    run = tmp_path / "ckpt" / "smoke"
    assert (run / "last").read_text().strip() == f"step_{target:08d}"
    step_dir = run / f"step_{target:08d}"
    for name in ("model.safetensors", "ema.safetensors", "normalizer.safetensors", "meta.json",
                 "config.yaml", "train_state.pt"):
        assert (step_dir / name).exists(), name
    assert not list(run.glob(".tmp_step_*")), "a killed write left a temporary folder"
    # the final evaluation lands where robopolicy-eval of that checkpoint writes (README: where results go)
    assert result["out_dir"] == str(step_dir / "eval" / "pushblock") and (step_dir / "eval" / "pushblock" / "eval_info.json").exists()
    ts = torch.load(step_dir / "train_state.pt", weights_only=False)
    assert ts["step"] == target

    # 4) load_policy needs no Hydra and reproduces the saved EMA policy's actions
    import robopolicy
    from robopolicy.train.checkpoint import load_state

    p1 = robopolicy.load_policy(run)
    p2 = robopolicy.load_policy(step_dir)
    ema = load_state(step_dir, use_ema=True)
    for k, v in p1.state_dict().items():
        assert torch.equal(v, ema[k]), k
    obs = {"observation.state": torch.randn(1, 2, p1.features.state_dim)}
    torch.manual_seed(0)
    a1, _ = p1.act(obs, p1.init_state(1))
    torch.manual_seed(0)
    a2, _ = p2.act(obs, p2.init_state(1))
    assert a1.shape == (1, 4, p1.features.action_dim) and torch.equal(a1, a2)


def test_load_policy_errors_name_the_problem(tmp_path):
    import robopolicy

    with pytest.raises(FileNotFoundError, match="does not exist"):
        robopolicy.load_policy(tmp_path / "nope")
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        robopolicy.load_policy(tmp_path / "run")
    bad = tmp_path / "run" / "step_00000001"
    bad.mkdir()
    (bad / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        robopolicy.load_policy(bad)
