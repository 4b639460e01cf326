"""Which dataset the trainer trains on, and when it records: a named dataset is never written to."""

import json
from types import SimpleNamespace

import pytest

import robopolicy.data
from robopolicy.data import layout
from robopolicy.train.config import TrainConfig
from robopolicy.train.run import ensure_dataset

SUITE = SimpleNamespace(tasks=["a", "b"])


@pytest.fixture
def recorded(monkeypatch):
    calls = []
    monkeypatch.setattr(robopolicy.data, "record_dataset", lambda *a, **k: calls.append((a, k)))
    return calls


def _info(episodes):
    """A minimal valid info.json (ensure_dataset reads it through the checked reader)."""
    features = {"action": {"dtype": "float32", "shape": [2], "names": None}, **layout.DEFAULT_FEATURES}
    return json.dumps({"codebase_version": "v3.0", "fps": 10, "features": features, "data_path": layout.DATA_PATH,
                       "total_episodes": episodes, "total_frames": 10 * episodes})


def _dataset(path, episodes):
    (path / "meta").mkdir(parents=True)
    (path / "meta" / "info.json").write_text(_info(episodes))
    return path


def test_named_existing_dataset_is_used_as_is_even_when_short(tmp_path, recorded, capsys):
    path = _dataset(tmp_path / "mine", 3)
    before = (path / "meta" / "info.json").read_text()
    cfg = TrainConfig(env="metaworld/mt1/push-v3", dataset=str(path), episodes=50)
    assert ensure_dataset(cfg, SUITE) == path
    assert recorded == [] and (path / "meta" / "info.json").read_text() == before
    assert "never appended to" in capsys.readouterr().out


def test_named_missing_dataset_is_recorded(tmp_path, recorded):
    cfg = TrainConfig(env="metaworld/mt1/push-v3", dataset=str(tmp_path / "new"), episodes=7)
    ensure_dataset(cfg, SUITE)
    (args, kwargs), = recorded
    assert args == ("metaworld/mt1/push-v3", str(tmp_path / "new")) and kwargs["episodes"] == 7


def test_named_folder_with_other_files_or_no_episodes_is_refused(tmp_path, recorded):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    cfg = TrainConfig(env="metaworld/mt1/push-v3", dataset=str(tmp_path / "stuff"), episodes=7)
    with pytest.raises(FileNotFoundError, match="not a LeRobot dataset"):
        ensure_dataset(cfg, SUITE)
    assert recorded == [] and (tmp_path / "stuff" / "notes.txt").read_text() == "mine"
    empty = _dataset(tmp_path / "interrupted", 0)
    with pytest.raises(ValueError, match="holds no episodes"):
        ensure_dataset(TrainConfig(dataset=str(empty)), SUITE)
    assert recorded == []


def test_default_cache_is_recorded_then_topped_up_then_left_alone(tmp_path, recorded, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(env="metaworld/mt1/push-v3", episodes=5)
    path = ensure_dataset(cfg, SUITE)
    assert len(recorded) == 1  # missing: recorded
    _dataset(tmp_path / path, 3)
    ensure_dataset(cfg, SUITE)
    assert len(recorded) == 2 and recorded[1][1]["episodes"] == 5  # short: topped up to 5 per task
    (tmp_path / path / "meta" / "info.json").write_text(_info(10))
    ensure_dataset(cfg, SUITE)
    assert len(recorded) == 2  # full (5 per task x 2 tasks): left alone
