"""Damaged meta/ files (info.json, stats.json, tasks.parquet, the recorder's bookkeeping): every
reader of them (LeRobotDataset, the trainer's ensure_dataset, the recorder continuing a dataset)
names the file and what is wrong with it, and the command it suggests works."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import robopolicy.data
from robopolicy.data import LeRobotDataset
from robopolicy.data.record import RECORDING_PATH, record_dataset
from robopolicy.train.config import TrainConfig
from robopolicy.train.run import ensure_dataset

FAKE = "data_fakes:make_fake_suite"
INFO = "meta/info.json"


def rec(root: Path, episodes: int = 3, **kw):
    return record_dataset("fake", root, episodes, progress=False, num_workers=0, suite_factory=FAKE, **kw)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("meta") / "ds"
    rec(root)
    return root


@pytest.fixture
def ds(recorded, tmp_path) -> Path:
    return Path(shutil.copytree(recorded, tmp_path / "ds"))


def _cut(path: Path) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


DAMAGE = {
    "cut in half": (
        _cut,
        r"meta/info.json: not valid JSON at line \d+, column \d+: .*\(the text ends early: the file was cut short\)",
    ),
    "random bytes": (
        lambda p: p.write_bytes(b"\xff\xfe\x00" + np.random.default_rng(0).bytes(200)),
        r"meta/info.json: not valid UTF-8 \(byte 0xff at offset 0 of 203\)",
    ),
    "empty": (
        lambda p: p.write_text(""),
        r"meta/info.json: not valid JSON at line 1, column 1: .*\(the file is empty\)",
    ),
    "{}": (
        lambda p: p.write_text("{}"),
        r"meta/info.json: missing required keys \['codebase_version', 'fps', 'features', 'data_path', "
        r"'total_episodes', 'total_frames'\]",
    ),
    "a list": (lambda p: p.write_text("[1, 2]"), r"meta/info.json: must be a JSON object, got list"),
    "wrong types": (
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "fps": "ten", "total_episodes": -3})),
        r"meta/info.json: wrong types: fps must be a positive number \(got 'ten'\), "
        r"total_episodes must be a non-negative integer \(got -3\)",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_info_json_is_named_by_every_reader(ds, damage, monkeypatch):
    fn, pattern = DAMAGE[damage]
    fn(ds / INFO)
    for call in (
        lambda: LeRobotDataset(ds),
        lambda: ensure_dataset(TrainConfig(dataset=str(ds)), SimpleNamespace(tasks=["reach"])),
        lambda: rec(ds),  # the recorder continuing it
    ):
        with pytest.raises(ValueError, match=pattern) as err:
            call()
        assert "holds no episodes" not in str(err.value)
        assert f"mv {ds} {ds}.damaged && robopolicy-record env=fake obs=state episodes=3 output={ds}" in str(err.value)
    # The trainer's own cache (no dataset= given) reads it through the same check.
    monkeypatch.chdir(ds.parent)
    cache = ds.parent / "datasets" / "pushblock_state"
    shutil.copytree(ds, cache)
    monkeypatch.setattr(robopolicy.data, "record_dataset", lambda *a, **k: pytest.fail("recorded over damage"))
    with pytest.raises(ValueError, match=pattern.replace("meta/info.json", "pushblock_state/meta/info.json")):
        ensure_dataset(TrainConfig(env="pushblock"), SimpleNamespace(tasks=["pushblock"]))


def test_the_command_suggested_for_a_damaged_info_json_works(ds):
    before = LeRobotDataset(ds)
    _cut(ds / INFO)
    with pytest.raises(ValueError) as err:
        LeRobotDataset(ds)
    msg = str(err.value)
    cmd = msg[msg.index("record the dataset again with: ") + len("record the dataset again with: ") :]
    move, record = cmd.split(" && ")
    mv, src, dst = shlex.split(move)
    assert mv == "mv"
    Path(src).rename(dst)
    args = dict(a.split("=", 1) for a in shlex.split(record)[1:])
    assert args.pop("env") == "fake" and args.pop("output") == str(ds)
    rec(ds, episodes=int(args.pop("episodes")), **args)
    after = LeRobotDataset(ds)
    assert after.num_episodes == before.num_episodes
    assert np.array_equal(after._arrays["observation.state"], before._arrays["observation.state"])


def test_an_interrupted_recording_is_still_reported_as_such(tmp_path):
    """A valid info.json with no episodes yet: the named-dataset message for that case is kept."""
    root = tmp_path / "ds"
    rec(root, episodes=0)  # nothing recorded: no dataset at all
    assert not root.exists()
    rec(root)
    info = json.loads((root / INFO).read_text())
    (root / INFO).write_text(json.dumps({**info, "total_episodes": 0, "total_frames": 0, "splits": {}}))
    with pytest.raises(ValueError, match="holds no episodes"):
        ensure_dataset(TrainConfig(dataset=str(root)), SimpleNamespace(tasks=["reach"]))


@pytest.mark.parametrize("content", ["cut", "not a mapping", "strings"])
def test_damaged_stats_json_is_named_and_rebuilt_by_the_recorder(ds, content):
    stats = json.loads((ds / "meta/stats.json").read_text())
    path = ds / "meta/stats.json"
    if content == "cut":
        _cut(path)
    elif content == "not a mapping":
        path.write_text("[]")
    else:
        path.write_text(json.dumps({"action": {"mean": ["a", "b"]}}))
    hint = r"; repair it with the command that recorded it: robopolicy-record env=fake"
    with pytest.raises(ValueError, match=r"meta/stats.json: .*" + hint):
        LeRobotDataset(ds)
    assert rec(ds).attempts == 0
    new = json.loads(path.read_text())
    assert new.keys() == stats.keys()
    for k in stats:
        for s in stats[k]:
            np.testing.assert_allclose(new[k][s], stats[k][s], rtol=1e-12, atol=1e-12)


def test_damaged_tasks_parquet_is_named_and_rebuilt_from_the_episode_rows(ds):
    path = ds / "meta/tasks.parquet"
    blob = path.read_bytes()
    path.write_bytes(blob[:100])
    with pytest.raises(ValueError, match=r"meta/tasks.parquet: corrupt or unreadable parquet .*; repair it with"):
        LeRobotDataset(ds)
    assert rec(ds).attempts == 0
    assert LeRobotDataset(ds).meta.tasks == ["do reach"]


def test_damaged_recording_file_is_named_with_a_working_way_out(ds):
    (ds / RECORDING_PATH).write_text('{"config": {"suite": "fa')
    with pytest.raises(ValueError) as err:
        rec(ds)
    msg = str(err.value)
    assert "robopolicy_recording.json: not valid JSON at line 1, column" in msg
    assert f"move this one aside (mv {ds} {ds}.damaged) and run the same command again" in msg
    ds.rename(f"{ds}.damaged")
    assert rec(ds).episodes == 3
    good = (ds / RECORDING_PATH).read_text()
    (ds / RECORDING_PATH).write_text('{"episodes": [{"episode_index": 0}]}')
    with pytest.raises(ValueError, match=r"robopolicy_recording.json: not a recording file"):
        rec(ds)
    d = json.loads(good)
    (ds / RECORDING_PATH).write_text(json.dumps({**d, "episodes": d["episodes"][:2]}))  # disagrees with info.json
    with pytest.raises(ValueError, match=r"lists 2 episodes, the dataset has 3; .*move this one aside \(mv "):
        rec(ds)


V21 = (Path(__file__).parents[2] / ".." / "shared" / "fixtures" / "lerobot" / "v21_video_lerobot032").resolve()


@pytest.mark.skipif(not V21.is_dir(), reason=f"lerobot fixture {V21} not found")
def test_a_damaged_v21_dataset_is_not_sent_to_a_repair_that_cannot_handle_it(tmp_path):
    root = Path(shutil.copytree(V21, tmp_path / "v21"))
    data = sorted((root / "data").rglob("*.parquet"))[0]
    _cut(data)
    with pytest.raises(ValueError, match=r"corrupt or unreadable parquet .*; restore the damaged file from the "
                                         r"dataset's source \(only v3.0 datasets can be repaired here\)"):
        LeRobotDataset(root)
