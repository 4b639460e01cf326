"""record_dataset / robopolicy-record: which trials are kept, multi-task counts, resuming after an
interruption, and independence from the number of worker processes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robopolicy.data import LeRobotDataset
from robopolicy.data.record import RECORDING_PATH, record_dataset

FAKE = "data_fakes:make_fake_suite"  # trials whose seed % 3 == 2 fail; seeds are task_slot * 1000 + trial


def rec(out, name="fake", episodes=4, **kw):
    kw.setdefault("num_workers", 0)
    return record_dataset(name, out, episodes, progress=False, suite_factory=FAKE, **kw)


def trials(root: Path) -> list[tuple[str, int]]:
    d = json.loads((root / RECORDING_PATH).read_text())
    return [(e["task"], e["trial"]) for e in d["episodes"]]


def test_keeps_successes_in_trial_order(tmp_path):
    s = rec(tmp_path / "ds", episodes=4)
    assert (s.episodes, s.new_episodes, s.attempts, s.failed) == (4, 4, 5, 1)
    assert trials(tmp_path / "ds") == [("reach", 0), ("reach", 1), ("reach", 3), ("reach", 4)]
    ds = LeRobotDataset(tmp_path / "ds")
    assert ds.meta.tasks == ["do reach"] and ds.fps == 10
    assert ds.meta.info["robot_type"] == "fake"
    # episode 2 comes from trial 3: x starts at (3 % 5) * 0.1 and the expert pushes +0.25 per step
    ep2 = ds.episode_bounds[2]
    xs = [ds[i]["observation.state"][0].item() for i in range(*ep2)]
    assert xs[:3] == pytest.approx([0.3, 0.55, 0.8])
    # stop_on_success: success after step 3 (x=1.05), then post_success_steps=4 more frames
    assert ep2[1] - ep2[0] == 3 + 4
    assert ds[ep2[0]]["action"].tolist() == [1.0]
    assert s.frames == len(ds)


def test_keep_failed_keeps_exactly_the_first_trials(tmp_path):
    s = rec(tmp_path / "ds", episodes=4, keep_failed=True, stop_on_success=False)
    assert trials(tmp_path / "ds") == [("reach", t) for t in range(4)]
    assert (s.attempts, s.failed) == (4, 1)
    ds = LeRobotDataset(tmp_path / "ds")
    assert ds.episode_bounds[:, 1].tolist() == [30, 60, 90, 120]  # full 30-step episodes


def test_attempts_are_capped_at_three_times(tmp_path, capsys):
    s = rec(tmp_path / "ds", name="fake/never", episodes=2)
    assert (s.episodes, s.attempts, s.failed) == (0, 6, 6)
    assert not (tmp_path / "ds" / "meta" / "info.json").exists()


def test_multi_task_records_episodes_per_task_with_images(tmp_path):
    s = rec(tmp_path / "ds", name="fake/multi", episodes=2, obs="image", image_size=8)
    assert s.per_task == {"reach": 2, "push": 2}
    ds = LeRobotDataset(tmp_path / "ds")
    assert ds.meta.tasks == ["do reach", "do push"]
    assert [e["tasks"] for e in ds.meta.episodes] == [["do reach"]] * 2 + [["do push"]] * 2
    assert ds.feature_spec().cameras == {"cam": (3, 8, 8)}
    assert ds.meta.features["observation.images.cam"]["dtype"] == "video"
    # push seeds are 1000 + trial: trial 1 (seed 1001 % 3 == 2) fails
    assert trials(tmp_path / "ds") == [("reach", 0), ("reach", 1), ("push", 0), ("push", 2)]


def test_interrupted_recording_continues_with_the_same_trials(tmp_path, monkeypatch):
    full = rec(tmp_path / "full", episodes=5)
    monkeypatch.setenv("FAKE_SUITE_CRASH_SEED", "4")  # dies while rolling out trial 4
    with pytest.raises(KeyboardInterrupt):
        rec(tmp_path / "cut", episodes=5)
    assert trials(tmp_path / "cut") == [("reach", 0), ("reach", 1), ("reach", 3)]
    monkeypatch.delenv("FAKE_SUITE_CRASH_SEED")
    s = rec(tmp_path / "cut", episodes=5)
    assert s.new_episodes == 2 and s.episodes == 5
    assert trials(tmp_path / "cut") == trials(tmp_path / "full")
    a, b = LeRobotDataset(tmp_path / "full"), LeRobotDataset(tmp_path / "cut")
    assert np.array_equal(
        a._arrays["observation.state"], b._arrays["observation.state"]
    ) and full.frames == len(b)
    # asking again for the same number records nothing; asking for more continues
    assert rec(tmp_path / "cut", episodes=5).attempts == 0
    assert rec(tmp_path / "cut", episodes=6).episodes == 6
    with pytest.raises(ValueError, match="keep_failed=False, now keep_failed=True"):
        rec(tmp_path / "cut", episodes=7, keep_failed=True)


def test_worker_processes_give_the_same_dataset(tmp_path):
    rec(tmp_path / "serial", episodes=5, obs="image")
    rec(tmp_path / "parallel", episodes=5, obs="image", num_workers=2)
    assert trials(tmp_path / "serial") == trials(tmp_path / "parallel")
    a, b = LeRobotDataset(tmp_path / "serial"), LeRobotDataset(tmp_path / "parallel")
    for k in ("observation.state", "action", "index"):
        assert np.array_equal(a._arrays[k], b._arrays[k]), k
    assert a.meta.info == b.meta.info


needs_envs = pytest.mark.skipif(
    importlib.util.find_spec("envs") is None, reason="envs package not importable"
)


@needs_envs
def test_pushblock_expert_recording(tmp_path):
    s = record_dataset("pushblock", tmp_path / "pb", 2, num_workers=0, progress=False)
    assert s.episodes == 2 and s.failed == 0
    ds = LeRobotDataset(tmp_path / "pb", delta_timestamps={"action": [0, 0.1]})
    spec = ds.feature_spec()
    assert spec.action_dim == 2 and spec.state_dim == 10 and spec.cameras == {}
    assert ds.meta.tasks == ["push the red block onto the green target"]
    assert np.abs(ds._arrays["action"]).max() <= 1.0 and np.abs(ds._arrays["action"]).max() > 0.1


@needs_envs
def test_cli_accepts_suite_names_with_slashes(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "robopolicy.cli.record",
        "env=pushblock",
        "obs=image",
        "image_size=32",
        "episodes=1",
        f"output={tmp_path / 'ds'}",
        "num_workers=0",
        "progress=false",
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "MUJOCO_GL": "egl"}
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "1 episodes" in out.stdout
    ds = LeRobotDataset(tmp_path / "ds")
    assert ds.feature_spec().cameras == {"top": (3, 32, 32)}
    assert ds[0]["observation.images.top"].std() > 0  # not a black frame
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "robopolicy.cli.record",
            "env=metaworld/mt1/no-such-task-v3",
            "episodes=1",
            f"output={tmp_path / 'x'}",
            "num_workers=0",
            "progress=false",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        bad.returncode != 0 and "no-such-task-v3" in bad.stderr
    )  # the override parsed; the suite rejected it
