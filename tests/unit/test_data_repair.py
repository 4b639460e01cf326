"""Damaged datasets: the error names the file and gives a repair command, and that command works.

robopolicy-record with the same output rebuilds lost episode metadata from the data files, drops
the episodes a missing or cut-short data / video file held (printing each) and re-records them from
the same trials; every episode that survives keeps byte-identical frames. Datasets not made by the
recorder are repaired with ``python -m robopolicy.data.repair``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from data_fakes import FEATURES, write_episodes

from robopolicy.data import LeRobotDataset, LeRobotDatasetWriter
from robopolicy.data import repair as repair_mod
from robopolicy.data.record import RECORDING_PATH, record_dataset

FAKE = "data_fakes:make_fake_suite"  # trials whose seed % 3 == 2 fail
META = "meta/episodes/chunk-000/file-000.parquet"
CAM = "observation.images.cam"


def data_file(i: int) -> str:
    return f"data/chunk-000/file-{i:03d}.parquet"


def video_file(i: int) -> str:
    return f"videos/{CAM}/chunk-000/file-{i:03d}.mp4"


def rec(root: Path, episodes: int = 6, obs: str = "state", **kw):
    """The fake suite through record_dataset, with small file size limits so files hold a few episodes."""
    kw.setdefault("num_workers", 0)
    kw.setdefault("use_videos", obs == "image")
    kw.setdefault("writer_options", {"data_files_size_in_mb": 0.008 if obs == "state" else 0.012,
                                     "video_files_size_in_mb": 0.0024})
    return record_dataset("fake", root, episodes, obs=obs, progress=False, suite_factory=FAKE, **kw)


def by_trial(root: Path) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """Every episode's frames (state, action, decoded camera), keyed by the (task, trial) that made it."""
    ds = LeRobotDataset(root)
    trials = json.loads((root / RECORDING_PATH).read_text())["episodes"]
    out = {}
    for e, (a, b) in enumerate(ds.episode_bounds):
        items = [ds[i] for i in range(a, b)]
        out[(trials[e]["task"], trials[e]["trial"])] = {
            k: np.stack([it[k].numpy() for it in items]) for k in ("observation.state", "action", *ds.camera_keys)
        }
    return out


def assert_same_episodes(after: dict, before: dict) -> None:
    """The same (task, trial) episodes, each with byte-identical frames."""
    assert sorted(after) == sorted(before)
    for trial, frames in before.items():
        assert after[trial].keys() == frames.keys()
        for k in frames:
            assert np.array_equal(after[trial][k], frames[k]), (trial, k)


def assert_close_stats(a: dict, b: dict) -> None:
    """Equal up to float rounding: the writer aggregates episode by episode, a repair all at once
    (as the writer's own resume does)."""
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].keys() == b[k].keys(), k
        for s in a[k]:
            np.testing.assert_allclose(a[k][s], b[k][s], rtol=1e-12, atol=1e-12, err_msg=f"{k}/{s}")


def truncate(path: Path, frac: float = 0.5) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * frac)])


def rerun(err: Exception, suite_factory: str = FAKE, **kw):
    """Run the robopolicy-record command an error suggests (through record_dataset, with the fake suite)."""
    msg = str(err)
    cmd = msg[msg.index("robopolicy-record ") :].split(" (it rebuilds", 1)[0]
    args = dict(a.split("=", 1) for a in shlex.split(cmd)[1:])
    bools = {"keep_failed", "use_videos", "stop_on_success"}
    call = {k: (v == "true" if k in bools else int(v) if k in ("image_size", "post_success_steps") else v)
            for k, v in args.items() if k not in ("env", "episodes", "output")}
    return record_dataset(args["env"], args["output"], int(args["episodes"]), progress=False, num_workers=0,
                          suite_factory=suite_factory, **call, **kw)


def test_lost_episode_metadata_is_rebuilt_exactly_from_the_data_files(tmp_path, capsys):
    root = tmp_path / "ds"
    rec(root)
    info = json.loads((root / "meta/info.json").read_text())
    stats = json.loads((root / "meta/stats.json").read_text())
    rows = LeRobotDataset(root).meta.episodes
    frames = by_trial(root)
    files = sorted((root / "meta/episodes").rglob("*.parquet"))
    assert len(files) > 1  # several metadata files: one deleted, one cut short
    files[0].unlink()
    truncate(files[1])
    with pytest.raises(ValueError, match=r"file-001.parquet: corrupt or unreadable parquet.*robopolicy-record env="):
        LeRobotDataset(root)
    s = rerun(pytest.raises(ValueError, LeRobotDataset, root).value)
    assert (s.episodes, s.attempts, s.dropped) == (6, 0, [])  # nothing lost: nothing re-recorded
    assert "rebuilding the metadata of" in capsys.readouterr().out
    ds = LeRobotDataset(root)
    moved = ("meta/episodes/chunk_index", "meta/episodes/file_index")  # all rows now sit in one file
    for old, new in zip(rows, ds.meta.episodes):
        assert {k: v for k, v in old.items() if k not in moved} == {k: v for k, v in new.items() if k not in moved}
    assert json.loads((root / "meta/info.json").read_text()) == info
    assert_close_stats(json.loads((root / "meta/stats.json").read_text()), stats)
    assert_same_episodes(by_trial(root), frames)


@pytest.mark.parametrize("damage", ["delete", "truncate", "random"])
def test_damaged_data_file_drops_its_episodes_and_rerecords_them(tmp_path, capsys, damage):
    root = tmp_path / "ds"
    rec(root, episodes=8)
    before = by_trial(root)
    meta = LeRobotDataset(root).meta
    held = [e["episode_index"] for e in meta.episodes if e["data/file_index"] == 1]
    assert 1 < len(held) < 8 and max(held) < 7  # the file holds several episodes, later ones follow it
    path = root / data_file(1)
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        truncate(path)
    else:
        path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    hint = "repair it with the command that recorded it: robopolicy-record env=fake obs=state episodes=8"
    with pytest.raises((ValueError, FileNotFoundError), match=r"file-001.parquet: .*" + hint) as err:
        LeRobotDataset(root)
    untouched = {p.relative_to(root): p.read_bytes() for p in [root / data_file(0)]}
    s = rerun(err.value)
    out = capsys.readouterr().out
    for e in held:
        assert f"dropping episode {e}: its data file data/chunk-000/file-001.parquet is" in out
    assert s.episodes == 8 and s.new_episodes == len(held) and len(s.dropped) == len(held)
    assert all(d["reason"].startswith("its data file data/chunk-000/file-001.parquet") for d in s.dropped)
    assert_same_episodes(by_trial(root), before)  # the same trials: the dropped ones were recorded again
    for rel, blob in untouched.items():  # a file holding only intact, unrenumbered episodes is untouched
        assert (root / rel).read_bytes() == blob
    ds = LeRobotDataset(root)
    assert [e["episode_index"] for e in ds.meta.episodes] == list(range(8))
    stats_rows = [r for f in sorted((root / "meta/episodes").rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert [r["stats/episode_index/mean"] for r in stats_rows] == [[float(i)] for i in range(8)]  # renumbered
    assert [r["stats/index/min"] for r in stats_rows] == [[float(e["dataset_from_index"])] for e in ds.meta.episodes]
    assert ds.meta.episodes[-1]["dataset_to_index"] == len(ds) == ds.meta.total_frames
    assert rec(root, episodes=8).attempts == 0  # repaired and complete: nothing more to do


def test_data_and_metadata_both_lost(tmp_path, capsys):
    root = tmp_path / "ds"
    rec(root, episodes=8)
    before = by_trial(root)
    held = [e["episode_index"] for e in LeRobotDataset(root).meta.episodes if e["data/file_index"] == 1]
    for f in (root / "meta/episodes").rglob("*.parquet"):
        f.unlink()
    (root / data_file(1)).unlink()
    with pytest.raises(FileNotFoundError, match=r"meta/episodes: no episode metadata parquet files; repair it") as err:
        LeRobotDataset(root)
    s = rerun(err.value)
    assert [d["trial"] for d in s.dropped] == [list(before)[e][1] for e in held]
    assert "and its metadata is lost too" in capsys.readouterr().out
    assert s.episodes == 8
    assert_same_episodes(by_trial(root), before)


def test_video_cut_short_keeps_the_episodes_before_the_cut(tmp_path, capsys):
    root = tmp_path / "ds"
    rec(root, episodes=6, obs="image")
    before = by_trial(root)
    meta = LeRobotDataset(root).meta
    in_file0 = [e for e in meta.episodes if e[f"videos/{CAM}/file_index"] == 0]
    assert len(in_file0) >= 3
    # Cut inside the last episode of file-000: a faststart mp4 still opens and claims its full length.
    vpath = root / video_file(0)
    truncate(vpath, 0.8)
    with pytest.raises(ValueError, match=r"file-000.mp4: truncated video .*repair it with the command that recorded"):
        LeRobotDataset(root)
    s = rerun(pytest.raises(ValueError, LeRobotDataset, root).value)
    out = capsys.readouterr().out
    lost = [d["trial"] for d in s.dropped]
    assert lost and len(lost) < len(in_file0)  # the episodes before the cut were kept
    assert f"its frames in {video_file(0)} are lost (the file is cut short: intact up to" in out
    assert s.episodes == 6
    assert_same_episodes(by_trial(root), before)
    assert repair_mod.mp4_truncated(root / video_file(0)) is None  # rewritten cleanly up to the kept episodes


def test_missing_video_file_and_lost_metadata(tmp_path, capsys):
    root = tmp_path / "ds"
    rec(root, episodes=6, obs="image")
    before = by_trial(root)
    meta = LeRobotDataset(root).meta
    rows = {e["episode_index"]: e for e in meta.episodes}
    in_file1 = [e for e, r in rows.items() if r[f"videos/{CAM}/file_index"] == 1]
    (root / video_file(1)).unlink()
    with pytest.raises(FileNotFoundError, match=r"file-001.mp4: video file not found; repair it"):
        LeRobotDataset(root)
    for f in (root / "meta/episodes").rglob("*.parquet"):  # and the rows saying where each episode's frames are
        f.unlink()
    s = rerun(pytest.raises(FileNotFoundError, LeRobotDataset, root).value)
    assert sorted(d["trial"] for d in s.dropped) == sorted(list(before)[e][1] for e in in_file1)
    ds = LeRobotDataset(root)
    # The episodes before the lost file were placed in file-000 exactly where they were.
    for e in range(min(in_file1)):
        for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp"):
            assert ds.meta.episodes[e][f"videos/{CAM}/{c}"] == rows[e][f"videos/{CAM}/{c}"]
    assert_same_episodes(by_trial(root), before)


def test_lost_video_metadata_is_found_again_by_walking_the_video_files(tmp_path):
    """Rows say where each episode sits in which mp4; rebuilt by walking the files in episode order."""
    root = tmp_path / "ds"
    rec(root, episodes=6, obs="image")
    rows = LeRobotDataset(root).meta.episodes
    assert len({r[f"videos/{CAM}/file_index"] for r in rows}) > 1  # the walk must cross into the next file
    before = by_trial(root)
    for f in (root / "meta/episodes").rglob("*.parquet"):
        f.unlink()
    assert rec(root, episodes=6, obs="image").attempts == 0
    moved = ("meta/episodes/chunk_index", "meta/episodes/file_index")
    for old, new in zip(rows, LeRobotDataset(root).meta.episodes):
        assert {k: v for k, v in old.items() if k not in moved} == {k: v for k, v in new.items() if k not in moved}
    assert_same_episodes(by_trial(root), before)


def test_stray_data_file_and_wrong_totals_are_repaired_without_dropping(tmp_path):
    root = tmp_path / "ds"
    rec(root, episodes=6)
    before = by_trial(root)
    n_files = len(list((root / "data").rglob("*.parquet")))
    shutil.copy(root / data_file(0), root / "data/chunk-000/file-100.parquet")
    with pytest.raises(ValueError, match=r"file-100.parquet: data file not referenced by any episode.*repair it with"):
        LeRobotDataset(root)
    s = rerun(pytest.raises(ValueError, LeRobotDataset, root).value)
    assert (s.attempts, s.dropped) == (0, []) and len(list((root / "data").rglob("*.parquet"))) == n_files
    info = json.loads((root / "meta/info.json").read_text())
    (root / "meta/info.json").write_text(json.dumps({**info, "total_frames": info["total_frames"] + 5}))
    with pytest.raises(ValueError, match=r"total_frames=\d+ but episode lengths sum to \d+; repair it with"):
        LeRobotDataset(root)
    assert rec(root).attempts == 0
    assert json.loads((root / "meta/info.json").read_text()) == info
    assert_same_episodes(by_trial(root), before)


def test_png_image_metadata_rebuild_is_exact(tmp_path):
    root = tmp_path / "ds"
    rec(root, episodes=4, obs="image", use_videos=False)
    rows = LeRobotDataset(root).meta.episodes
    stats = json.loads((root / "meta/stats.json").read_text())
    for f in (root / "meta/episodes").rglob("*.parquet"):
        f.unlink()
    assert rec(root, episodes=4, obs="image", use_videos=False).attempts == 0
    moved = ("meta/episodes/chunk_index", "meta/episodes/file_index")
    for old, new in zip(rows, LeRobotDataset(root).meta.episodes):
        assert {k: v for k, v in old.items() if k not in moved} == {k: v for k, v in new.items() if k not in moved}
    assert_close_stats(json.loads((root / "meta/stats.json").read_text()), stats)


def test_killed_while_rerecording_continues_with_the_dropped_trials(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    rec(root, episodes=8)
    before = by_trial(root)
    held = [e["episode_index"] for e in LeRobotDataset(root).meta.episodes if e["data/file_index"] == 1]
    (root / data_file(1)).unlink()
    second = list(before)[held[1]][1]  # the seed of the fake suite's trial t is t
    monkeypatch.setenv("FAKE_SUITE_CRASH_SEED", str(second))
    with pytest.raises(KeyboardInterrupt):
        rec(root, episodes=8)
    monkeypatch.delenv("FAKE_SUITE_CRASH_SEED")
    assert LeRobotDataset(root).num_episodes == 8 - len(held) + 1  # repaired, one trial re-recorded
    s = rec(root, episodes=8)
    assert s.new_episodes == len(held) - 1 and s.dropped == []
    assert_same_episodes(by_trial(root), before)


def test_multi_task_repair_rerecords_per_task(tmp_path):
    root = tmp_path / "ds"
    record_dataset("fake/multi", root, 3, progress=False, num_workers=0, suite_factory=FAKE,
                   writer_options={"data_files_size_in_mb": 0.008})
    before = by_trial(root)
    (root / data_file(1)).unlink()
    s = record_dataset("fake/multi", root, 3, progress=False, num_workers=0, suite_factory=FAKE)
    assert s.dropped and s.per_task == {"reach": 3, "push": 3}
    assert_same_episodes(by_trial(root), before)


def test_foreign_dataset_is_repaired_by_the_suggested_module_command(tmp_path, capsys):
    """Written by the writer, not the recorder: the hint is python -m robopolicy.data.repair."""
    root = tmp_path / "ds"
    with LeRobotDatasetWriter.create(root, 10, FEATURES, data_files_size_in_mb=0.006) as w:
        write_episodes(w, range(5), length=10)
    before = LeRobotDataset(root)
    files = [before.meta.data_file(e) for e in before.meta.episodes]
    assert len(set(files)) > 2
    lost = [e["episode_index"] for e in before.meta.episodes if before.meta.data_file(e) == files[2]]
    keep = {e: before[int(before.episode_bounds[e][0])]["observation.state"] for e in range(5) if e not in lost}
    truncate(files[2])
    with pytest.raises(ValueError) as err:
        LeRobotDataset(root)
    msg = str(err.value)
    assert "corrupt or unreadable parquet" in msg
    cmd = shlex.split(msg[msg.index("python -m robopolicy.data.repair") :].split(" (it rebuilds", 1)[0])
    assert cmd[:3] == ["python", "-m", "robopolicy.data.repair"]
    assert repair_mod.main(cmd[3:]) == 0
    out = capsys.readouterr().out
    assert all(f"dropping episode {e}" in out for e in lost)
    ds = LeRobotDataset(root)
    assert ds.num_episodes == 5 - len(lost)
    # First frames of the kept episodes, in order: episode e's state starts at e * 100.
    assert [ds[int(a)]["observation.state"][0].item() for a, _ in ds.episode_bounds] == [
        keep[e][0].item() for e in sorted(keep)
    ]
    assert repair_mod.main([str(root)]) == 0 and "no damage found" in capsys.readouterr().out


def test_module_command_on_a_recording_queues_the_dropped_trials_for_the_recorder(tmp_path, capsys):
    root = tmp_path / "ds"
    rec(root, episodes=8)
    before = by_trial(root)
    held = [e["episode_index"] for e in LeRobotDataset(root).meta.episodes if e["data/file_index"] == 1]
    (root / data_file(1)).unlink()
    assert repair_mod.main([str(root), "--dry-run"]) == 0
    with pytest.raises(FileNotFoundError):  # a dry run changes nothing
        LeRobotDataset(root)
    assert repair_mod.main([str(root)]) == 0
    out = capsys.readouterr().out
    assert all(f"dropping episode {e}" in out for e in held)
    assert LeRobotDataset(root).num_episodes == 8 - len(held)
    s = rec(root, episodes=8)  # the recording file was renumbered with them; they are recorded again
    assert (s.new_episodes, s.attempts) == (len(held), len(held))
    assert_same_episodes(by_trial(root), before)


def test_a_repair_killed_during_its_swap_is_finished_by_the_next_run(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    rec(root, episodes=6)
    before = by_trial(root)
    (root / data_file(0)).unlink()
    real = os.rename
    calls = []

    def rename(a, b):
        calls.append(a)
        if len(calls) == 2:  # the old folder moved aside, the repaired one not yet in place
            raise KeyboardInterrupt("killed")
        real(a, b)

    monkeypatch.setattr(repair_mod.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        rec(root, episodes=6)
    monkeypatch.undo()
    assert not root.exists()
    with pytest.raises(FileNotFoundError, match="a repair was interrupted"):
        LeRobotDataset(root)
    s = rec(root, episodes=6)
    assert s.episodes == 6
    assert_same_episodes(by_trial(root), before)
    assert not list(tmp_path.glob(".ds.*"))  # no staging or damaged copies left behind


def test_an_interrupted_save_alone_is_not_damage(tmp_path):
    """The writer's own leftovers (an uncommitted episode's rows) are cleaned by resume, not by a repair."""
    root = tmp_path / "ds"
    rec(root, episodes=3)
    t = pq.read_table(root / data_file(0))
    extra = t.slice(0, 2).to_pydict()
    extra["episode_index"] = [3, 3]
    extra["index"] = [t.num_rows, t.num_rows + 1]
    import pyarrow as pa

    pq.write_table(pa.concat_tables([t, pa.table(extra, schema=t.schema)]), root / data_file(0))
    assert not repair_mod.plan_repair(root).needed
    assert rec(root, episodes=3).dropped == []


@pytest.mark.skipif(shutil.which("robopolicy-record") is None, reason="robopolicy-record not installed")
def test_suggested_command_really_works_on_the_command_line(tmp_path):
    """The real CLI on pushblock: truncate the data file, run exactly the command the error names."""
    import subprocess
    import sys

    root = tmp_path / "pb"
    base = [sys.executable, "-m", "robopolicy.cli.record"]
    first = subprocess.run(base + ["env=pushblock", "episodes=2", f"output={root}", "num_workers=0", "progress=false"],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    before = by_trial(root)
    truncate(root / data_file(0))
    with pytest.raises(ValueError) as err:
        LeRobotDataset(root)
    msg = str(err.value)
    cmd = shlex.split(msg[msg.index("robopolicy-record ") :].split(" (it rebuilds", 1)[0])
    again = subprocess.run(base + cmd[1:], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "dropping episode 0" in again.stdout
    assert_same_episodes(by_trial(root), before)
