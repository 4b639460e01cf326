"""LeRobotDatasetWriter: lerobot's v3.0 layout, round trips through our reader, file rotation,
crash safety (interrupted saves, a killed process) and input validation."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_fakes import FEATURES, frame, write_episodes
from robopolicy.data import LeRobotDataset, LeRobotDatasetWriter
from robopolicy.data.writer import _LOCK_NAME
from shared_fixtures import LEROBOT_FIXTURES, missing_reason

FIXTURE = LEROBOT_FIXTURES / "v30_video_lerobot061"
FIXTURE_IMG = FIXTURE.parent / "v30_image_lerobot044"


def fixture_like(root: Path, use_videos: bool) -> Path:
    """Write the fixture's content (README) with our writer."""
    rng = np.random.default_rng(0)
    feats = {
        "observation.state": {"dtype": "float32", "shape": [4], "names": ["j0", "j1", "j2", "j3"]},
        "action": {"dtype": "float32", "shape": [2], "names": ["a0", "a1"]},
        "observation.images.cam": {
            "dtype": "video",
            "shape": [32, 32, 3],
            "names": ["height", "width", "channels"],
        },
    }
    with LeRobotDatasetWriter.create(root, 10, feats, use_videos=use_videos) as w:
        for ep in range(2):
            for k in range(20):
                v = ep * 100 + k
                w.add_frame(
                    {
                        "observation.state": np.full(4, v, np.float32),
                        "action": np.array([v, -k], np.float32),
                        "observation.images.cam": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
                    },
                    task=f"task {ep}",
                )
            w.save_episode()
    return root


@pytest.mark.skipif(not FIXTURE.is_dir(), reason=missing_reason(FIXTURE))
def test_metadata_matches_what_lerobot_061_wrote(tmp_path):
    ours = fixture_like(tmp_path / "ds", use_videos=True)
    a = json.loads((FIXTURE / "meta/info.json").read_text())
    b = json.loads((ours / "meta/info.json").read_text())
    assert a == b  # every key, feature, video info entry, template and total
    sa = json.loads((FIXTURE / "meta/stats.json").read_text())
    sb = json.loads((ours / "meta/stats.json").read_text())
    assert sorted(sa) == sorted(sb)
    for feat in sa:
        assert sorted(sa[feat]) == sorted(sb[feat])
        for stat in sa[feat]:
            np.testing.assert_allclose(
                sb[feat][stat], sa[feat][stat], rtol=1e-5, atol=1e-6, err_msg=f"{feat}/{stat}"
            )
    for rel in [
        "meta/episodes/chunk-000/file-000.parquet",
        "data/chunk-000/file-000.parquet",
        "meta/tasks.parquet",
    ]:
        ta, tb = pq.read_table(FIXTURE / rel), pq.read_table(ours / rel)
        assert ta.schema.remove_metadata() == tb.schema.remove_metadata(), rel
    ra = pq.read_table(FIXTURE / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    rb = pq.read_table(ours / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    for x, y in zip(ra, rb):
        for k in x:
            if k.startswith("stats/"):
                np.testing.assert_allclose(y[k], x[k], rtol=1e-5, atol=1e-6, err_msg=k)
            else:
                assert x[k] == y[k], k
    hf = lambda p: json.loads(pq.read_table(p).schema.metadata[b"huggingface"])["info"]  # noqa: E731
    assert hf(FIXTURE / "data/chunk-000/file-000.parquet") == hf(ours / "data/chunk-000/file-000.parquet")
    assert pq.ParquetFile(ours / "data/chunk-000/file-000.parquet").metadata.num_row_groups == 2


@pytest.mark.skipif(not FIXTURE_IMG.is_dir(), reason=missing_reason(FIXTURE_IMG))
def test_png_mode_matches_lerobot_image_layout(tmp_path):
    ours = fixture_like(tmp_path / "ds", use_videos=False)
    a = pq.read_table(FIXTURE_IMG / "data/chunk-000/file-000.parquet")
    b = pq.read_table(ours / "data/chunk-000/file-000.parquet")
    assert a.schema.remove_metadata() == b.schema.remove_metadata()
    info = json.loads((ours / "meta/info.json").read_text())
    assert info["video_path"] is None and info["features"]["observation.images.cam"]["dtype"] == "image"
    assert b.column("observation.images.cam").to_pylist()[1]["path"] == "frame-000001.png"
    ds = LeRobotDataset(ours)
    rng = np.random.default_rng(0)
    px = np.stack([rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(40)])
    for i in (0, 19, 20, 39):  # PNG is lossless
        np.testing.assert_array_equal(
            ds[i]["observation.images.cam"].permute(1, 2, 0).numpy(), px[i] / np.float32(255)
        )


def test_video_round_trip_values(tmp_path):
    with LeRobotDatasetWriter.create(tmp_path / "ds", 10, FEATURES, robot_type="fake") as w:
        write_episodes(w, range(3), length=12)
    ds = LeRobotDataset(tmp_path / "ds", delta_timestamps={"action": [0, 0.1, 0.2]})
    assert len(ds) == 36 and ds.meta.tasks == ["task 0", "task 1"] and ds.meta.info["robot_type"] == "fake"
    for i in range(36):
        ep, k = divmod(i, 12)
        item = ds[i]
        assert item["observation.state"].tolist() == [ep * 100 + k, -k, 0.5]
        assert item["action"][0].tolist() == [ep, k]
        assert item["task"] == f"task {ep % 2}"
        got = item["observation.images.top"].mean().item() * 255
        assert abs(got - (ep * 40 + k * 7) % 256) < 2.5, (i, got)
    eps = ds.meta.episodes
    assert [e["videos/observation.images.top/from_timestamp"] for e in eps] == pytest.approx([0, 1.2, 2.4])
    assert [e["dataset_from_index"] for e in eps] == [0, 12, 24]
    assert ds.meta.stats["action"]["max"].tolist() == [2, 11]


def test_files_rotate_by_size_and_chunks_roll_over(tmp_path):
    root = tmp_path / "ds"
    w = LeRobotDatasetWriter.create(
        root, 10, FEATURES, chunks_size=2, data_files_size_in_mb=0.004, video_files_size_in_mb=0.002
    )
    write_episodes(w, range(5), length=12)
    w.finalize()
    data_files = sorted(p.relative_to(root).as_posix() for p in (root / "data").rglob("*.parquet"))
    assert len(data_files) > 2 and "data/chunk-001/file-000.parquet" in data_files
    assert len(list((root / "videos").rglob("*.mp4"))) > 1
    ds = LeRobotDataset(root)
    assert [ds[i]["observation.state"][0].item() for i in range(0, 60, 12)] == [0, 100, 200, 300, 400]
    locs = [(e["data/chunk_index"], e["data/file_index"]) for e in ds.meta.episodes]
    assert locs == sorted(locs) and len(set(locs)) > 1


def test_state_only_dataset_has_no_videos(tmp_path):
    feats = {k: v for k, v in FEATURES.items() if "images" not in k}
    with LeRobotDatasetWriter.create(tmp_path / "ds", 20, feats) as w:
        write_episodes(w, range(2), length=5, with_image=False)
    info = json.loads((tmp_path / "ds/meta/info.json").read_text())
    assert info["video_path"] is None and info["fps"] == 20 and info["total_frames"] == 10
    assert not (tmp_path / "ds/videos").exists() and not (tmp_path / "ds" / _LOCK_NAME).exists()
    assert LeRobotDataset(tmp_path / "ds")[7]["timestamp"].item() == pytest.approx(0.1)


@pytest.mark.parametrize("stage", ["video", "episode_row", "info"])
def test_interrupted_save_then_resume(tmp_path, monkeypatch, stage):
    root = tmp_path / "ds"
    w = LeRobotDatasetWriter.create(root, 10, FEATURES)
    write_episodes(w, range(2))
    for k in range(12):
        w.add_frame(frame(2, k), task="a brand new task")

    def boom(*a, **k):
        raise KeyboardInterrupt("killed")

    import robopolicy.data.writer as wmod

    if stage == "video":
        monkeypatch.setattr(LeRobotDatasetWriter, "_write_video", boom)
    elif stage == "episode_row":
        monkeypatch.setattr(LeRobotDatasetWriter, "_write_episode_row", boom)
    else:
        real = wmod.layout.write_json
        monkeypatch.setattr(
            wmod.layout, "write_json", lambda obj, p: boom() if str(p).endswith("info.json") else real(obj, p)
        )
    with pytest.raises(KeyboardInterrupt):
        w.save_episode()
    monkeypatch.undo()
    w._release_lock()
    if stage != "video":  # the data file already holds the uncommitted episode
        with pytest.raises(ValueError, match="half-written episode"):
            LeRobotDataset(root)
    w = LeRobotDatasetWriter.resume(root)
    assert (w.num_episodes, w.num_frames, w.tasks) == (2, 24, ["task 0", "task 1"])
    write_episodes(w, [3])
    w.finalize()
    ds = LeRobotDataset(root)
    assert len(ds) == 36 and ds.meta.tasks == ["task 0", "task 1"]
    assert ds[24]["observation.state"][0].item() == 300 and ds[24]["task"] == "task 1"
    assert abs(ds[35]["observation.images.top"].mean().item() * 255 - (3 * 40 + 11 * 7) % 256) < 2.5
    assert not list(root.rglob("*.tmp"))


def test_killed_process_keeps_saved_episodes(tmp_path):
    """A real SIGKILL in the middle of save_episode (after the data file was rewritten)."""
    root = tmp_path / "ds"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from data_fakes import FEATURES, frame, write_episodes
        from robopolicy.data.writer import LeRobotDatasetWriter
        w = LeRobotDatasetWriter.create({str(root)!r}, 10, FEATURES)
        write_episodes(w, range(3))
        for k in range(12):
            w.add_frame(frame(3, k), task="task 1")
        LeRobotDatasetWriter._write_episode_row = lambda self, row: os.kill(os.getpid(), signal.SIGKILL)
        w.save_episode()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    with pytest.raises(ValueError, match="half-written"):
        LeRobotDataset(root)
    w = LeRobotDatasetWriter.resume(root)  # the dead process's lock is gone with it
    assert w.num_episodes == 3
    write_episodes(w, [3, 4])
    w.finalize()
    ds = LeRobotDataset(root)
    assert [ds[i]["observation.state"][0].item() for i in range(0, 60, 12)] == [0, 100, 200, 300, 400]


def test_create_refuses_existing_and_resume_checks_features(tmp_path):
    root = tmp_path / "ds"
    with LeRobotDatasetWriter.create(root, 10, FEATURES) as w:
        write_episodes(w, [0])
    with pytest.raises(FileExistsError, match="resume=True"):
        LeRobotDatasetWriter.create(root, 10, FEATURES)
    with pytest.raises(ValueError, match="fps"):
        LeRobotDatasetWriter.create(root, 20, FEATURES, resume=True)
    other = {**FEATURES, "action": {"dtype": "float32", "shape": [3]}}
    with pytest.raises(ValueError, match="action"):
        LeRobotDatasetWriter.create(root, 10, other, resume=True)
    with LeRobotDatasetWriter.create(root, 10, FEATURES, resume=True) as w:
        assert w.num_episodes == 1
        with pytest.raises(RuntimeError, match="another LeRobotDatasetWriter"):
            LeRobotDatasetWriter.resume(root)


def test_bad_frames_and_features_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        LeRobotDatasetWriter.create(tmp_path / "a", 10, {"timestamp": {"dtype": "float32", "shape": [1]}})
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        LeRobotDatasetWriter.create(tmp_path / "b", 10, {"cam": {"dtype": "video", "shape": [3, 16, 16]}})
    with pytest.raises(ValueError, match="unsupported dtype"):
        LeRobotDatasetWriter.create(tmp_path / "c", 10, {"x": {"dtype": "complex64", "shape": [1]}})
    w = LeRobotDatasetWriter.create(tmp_path / "d", 10, FEATURES)
    good = frame(0, 0)
    with pytest.raises(ValueError, match="missing feature"):
        w.add_frame({k: v for k, v in good.items() if k != "action"}, task="t")
    with pytest.raises(ValueError, match="not features"):
        w.add_frame({**good, "extra": np.zeros(1)}, task="t")
    with pytest.raises(ValueError, match="'action': value of shape"):
        w.add_frame({**good, "action": np.zeros(3)}, task="t")
    with pytest.raises(ValueError, match="non-finite"):
        w.add_frame({**good, "action": np.array([np.nan, 0])}, task="t")
    with pytest.raises(ValueError, match="image shape"):
        w.add_frame({**good, "observation.images.top": np.zeros((8, 8, 3), np.uint8)}, task="t")
    with pytest.raises(ValueError, match="task"):
        w.add_frame(good, task="")
    with pytest.raises(ValueError, match="no frames"):
        w.save_episode()
    # channel-first and float [0, 1] images are accepted and converted
    w.add_frame({**good, "observation.images.top": np.full((3, 16, 16), 0.5, np.float32)}, task="t")
    assert w.episode_length == 1
    w.clear_episode()
    assert w.episode_length == 0
    w.finalize()
    with pytest.raises(RuntimeError, match="finalized"):
        w.add_frame(good, task="t")


def test_h264_videos_round_trip_and_resume_keeps_the_encoding(tmp_path):
    from robopolicy.data import VideoEncoding

    root = tmp_path / "ds"
    with LeRobotDatasetWriter.create(root, 10, FEATURES, video=VideoEncoding(vcodec="libx264", crf=18)) as w:
        write_episodes(w, range(2))
    info = json.loads((root / "meta/info.json").read_text())["features"]["observation.images.top"]["info"]
    assert (info["video.codec"], info["video.preset"], info["video.crf"]) == ("h264", "veryfast", 18)
    with pytest.raises(ValueError, match="other settings"):
        LeRobotDatasetWriter.resume(root, video=VideoEncoding())  # AV1 frames cannot join an H.264 file
    with LeRobotDatasetWriter.resume(root) as w:
        assert w.video.vcodec == "libx264" and w.video.crf == 18
        write_episodes(w, [2])
    ds = LeRobotDataset(root)
    import av

    with av.open(str(root / "videos/observation.images.top/chunk-000/file-000.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.video[0].frames == 36
    for i in (0, 11, 12, 35):
        ep, k = divmod(i, 12)
        assert abs(ds[i]["observation.images.top"].mean().item() * 255 - (ep * 40 + k * 7) % 256) < 2.5
