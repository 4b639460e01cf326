"""One closed-loop control run through the entry points: ``robopolicy-deploy`` on the simulated
robot, and ``robopolicy-serve`` + a deploy through it that survives the server being killed."""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from robopolicy.deploy.testing import free_port, save_untrained_checkpoint, start_server_process

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "MUJOCO_GL": "egl", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "run", env="pushblock")


def test_deploy_cli_runs_a_checkpoint_on_the_sim_robot(checkpoint, tmp_path):
    out = tmp_path / "deploy"
    cmd = [sys.executable, "-m", "robopolicy.cli.deploy", f"checkpoint={checkpoint.parent}", "robot=sim", "hz=50",
           "episodes=2", "max_steps=15", "scheduler=async", "torch_threads=1", "safety.max_delta=[0.5]",
           f"output={out}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "0/2 episodes succeeded" in proc.stdout  # untrained: pushes nothing onto the target
    s = json.loads((out / "summary.json").read_text())
    assert s["env"] == "pushblock" and s["hz"] == 50 and s["scheduler"] == "async" and s["episodes"] == 2
    assert [e["steps"] for e in s["per_episode"]] == [15, 15]
    assert all(e["stop_reason"] == "max_steps" for e in s["per_episode"])
    t = s["timing"]
    assert t["ticks"] == 30 and t["episodes"] == 2 and t["inference"]["chunks"] >= 4
    assert t["period_ms"]["p50"] == pytest.approx(20, abs=3)
    assert (out / "timing.png").stat().st_size > 5000
    assert len((out / "timing.csv").read_text().splitlines()) == 31


@pytest.mark.slow
def test_deploy_through_the_server_survives_a_killed_server(checkpoint, tmp_path):
    from robopolicy.deploy.job import DeployJobConfig, run_deploy

    port = free_port()
    log = tmp_path / "serve.log"
    servers = [start_server_process(checkpoint.parent, port, log, extra_args=("torch_threads=1",))]

    def kill_and_restart():
        servers[0].send_signal(signal.SIGKILL)  # no goodbye: the socket just dies
        servers[0].wait()
        servers.append(start_server_process(checkpoint.parent, port, log, extra_args=("torch_threads=1",)))

    killer = threading.Timer(1.0, kill_and_restart)
    killer.start()
    try:
        cfg = DeployJobConfig(server=f"ws://127.0.0.1:{port}", hz=10, duration_s=13.0, stop_on_success=False,
                              scheduler="async", output=str(tmp_path / "out"), server_timeout_s=2.0)
        result = run_deploy(cfg, progress=False)
    finally:
        killer.join()
        for p in servers:
            p.kill()
    ep = result["per_episode"][0]
    assert result["env"] == "pushblock" and ep["stop_reason"] == "duration"
    assert ep["inference_errors"] >= 1 and ep["safety_stats"].get("hold:server_down", 0) >= 5
    with open(tmp_path / "out" / "timing.csv") as f:
        holds = [row["hold"] for row in csv.DictReader(f)]
    first_down = holds.index("server_down")
    last_down = len(holds) - 1 - holds[::-1].index("server_down")
    assert 6 <= first_down <= 25  # killed after ~1 s at 10 Hz
    assert last_down < len(holds) - 10 and "" in holds[last_down + 1:]  # the policy drove it again
