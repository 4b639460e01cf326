"""Two training processes on the CPU (torchrun; accelerate picks MULTI_CPU with gloo): train a few
steps, checkpoint, resume. (``accelerate launch --cpu`` starts one process whatever
``--num_processes`` says: on CPUs it only launches several through MPI.)

What the README's "Several processes" section promises: one run folder and one checkpoint per save
(written by the main process), each process its own batches (effective batch = batch_size x
processes, gradients averaged), the learning-rate schedule advanced once per optimizer step, and a
resume that continues from the saved step."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.smoke.test_train_resume_eval import TINY

pytestmark = pytest.mark.slow


def _launch(tmp: Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "robopolicy.cli.train", "device=cpu", "env=pushblock",
           "obs=state", "episodes=3", f"dataset={tmp / 'data'}", f"output_dir={tmp / 'ckpt'}", "run_name=ddp",
           f"steps={steps}", "batch_size=8", "save_every=3", "log_every=3", "warmup_steps=1", "eval.episodes=0",
           "num_threads=1", *TINY, *extra]
    env = dict(os.environ, MUJOCO_GL="egl", OMP_NUM_THREADS="1")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=540)


def test_two_process_train_checkpoint_resume(tmp_path):
    from robopolicy.data import record_dataset

    record_dataset("pushblock", str(tmp_path / "data"), episodes=3, obs="state", num_workers=0, progress=False)
    out = _launch(tmp_path, 6)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run = tmp_path / "ckpt" / "ddp"
    assert sorted(p.name for p in run.glob("step_*")) == ["step_00000003", "step_00000006"]
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["ddp"]  # one run folder for both processes
    assert out.stdout.count("trained 6 steps") == 1  # one summary, from the main process
    assert "2 processes (MULTI_CPU): each draws its own batches of 8 (effective batch 16)" in out.stdout
    ts = torch.load(run / "step_00000006" / "train_state.pt", map_location="cpu", weights_only=False)
    # the cosine schedule advanced once per optimizer step (accelerate's default: once per process)
    assert ts["lr_scheduler"]["last_epoch"] == 6

    out = _launch(tmp_path, 9, "resume=true")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "resumed from" in out.stdout + out.stderr and "at step 6" in out.stdout + out.stderr
    meta = json.loads((run / "step_00000009" / "meta.json").read_text())
    assert meta["step"] == 9
    ts = torch.load(run / "step_00000009" / "train_state.pt", map_location="cpu", weights_only=False)
    assert ts["lr_scheduler"]["last_epoch"] == 9
