"""LeRobotDataset: bad input gives errors naming the file and the problem; windows, caching,
pickling and DataLoader workers behave."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from data_fakes import FEATURES, write_episodes
from robopolicy.data import LeRobotDataset, LeRobotDatasetWriter
from robopolicy.data.video import remux

DATA = "data/chunk-000/file-000.parquet"
VIDEO = "videos/observation.images.top/chunk-000/file-000.mp4"


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reader") / "ds"
    with LeRobotDatasetWriter.create(root, 10, FEATURES) as w:
        write_episodes(w, range(3), length=10)
    return root


@pytest.fixture
def ds_copy(clean, tmp_path) -> Path:
    return Path(shutil.copytree(clean, tmp_path / "ds"))


def edit_info(root: Path, fn) -> None:
    p = root / "meta/info.json"
    info = json.loads(p.read_text())
    fn(info)
    p.write_text(json.dumps(info))


def test_missing_dataset_and_info(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        LeRobotDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"meta/info.json: file not found"):
        LeRobotDataset(tmp_path / "empty")


def test_unknown_codebase_version(ds_copy):
    edit_info(ds_copy, lambda i: i.update(codebase_version="v1.6"))
    with pytest.raises(ValueError, match=r"info.json: codebase_version 'v1.6' is not supported"):
        LeRobotDataset(ds_copy)


def test_corrupt_info_json(ds_copy):
    (ds_copy / "meta/info.json").write_text("{not json")
    with pytest.raises(ValueError, match="info.json: not valid JSON"):
        LeRobotDataset(ds_copy)


def test_missing_and_corrupt_parquet(ds_copy):
    path = ds_copy / DATA
    blob = path.read_bytes()
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"file-000.parquet: parquet file not found"):
        LeRobotDataset(ds_copy)
    path.write_bytes(blob[: len(blob) // 2])  # what a killed lerobot ParquetWriter leaves: no footer
    with pytest.raises(ValueError, match=r"file-000.parquet: corrupt or unreadable parquet"):
        LeRobotDataset(ds_copy)


def test_missing_corrupt_and_truncated_video(ds_copy):
    path = ds_copy / VIDEO
    blob = path.read_bytes()
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"file-000.mp4: video file not found"):
        LeRobotDataset(ds_copy)
    path.write_bytes(b"\x00" * 64 + blob[100:300])
    with pytest.raises(ValueError, match=r"file-000.mp4: corrupt or unreadable video"):
        LeRobotDataset(ds_copy)
    path.write_bytes(blob)
    remux([(path, 2.0)], ds_copy / "cut.mp4")  # keep the first two episodes only
    (ds_copy / "cut.mp4").replace(path)
    with pytest.raises(
        ValueError, match=r"file-000.mp4: video is 2.000 s long but episode 2 needs a frame at 2.900 s"
    ):
        LeRobotDataset(ds_copy)
    ds = LeRobotDataset(ds_copy, check_videos=False)  # then the frame lookup itself reports it
    with pytest.raises(ValueError, match=r"file-000.mp4: no frame"):
        ds[25]


def test_feature_mismatches(ds_copy):
    edit_info(
        ds_copy, lambda i: i["features"].update(extra={"dtype": "float32", "shape": [1], "names": None})
    )
    with pytest.raises(
        ValueError, match=r"file-000.parquet: column\(s\) \['extra'\] declared in meta/info.json are missing"
    ):
        LeRobotDataset(ds_copy)
    edit_info(ds_copy, lambda i: i["features"].pop("extra"))
    edit_info(ds_copy, lambda i: i["features"].pop("action"))
    with pytest.raises(ValueError, match=r"file-000.parquet: column\(s\) \['action'\] are not features"):
        LeRobotDataset(ds_copy)
    edit_info(
        ds_copy, lambda i: i["features"].update(action={"dtype": "float32", "shape": [5], "names": None})
    )
    with pytest.raises(
        ValueError, match=r"file-000.parquet: column 'action' holds 2 values per row but .* shape \[5\]"
    ):
        LeRobotDataset(ds_copy)


def test_episode_rows_disagree_with_metadata(ds_copy):
    path = ds_copy / DATA
    t = pq.read_table(path)
    pq.write_table(t.slice(0, 25), path)  # the last episode lost 5 rows
    with pytest.raises(ValueError, match=r"file-000.parquet: episode 2 should have 10 rows .* but has 5"):
        LeRobotDataset(ds_copy)


def test_metadata_counts_disagree(ds_copy):
    edit_info(ds_copy, lambda i: i.update(total_frames=31))
    with pytest.raises(ValueError, match="total_frames=31 but episode lengths sum to 30"):
        LeRobotDataset(ds_copy)


def test_stray_data_file_is_a_half_written_episode(ds_copy):
    shutil.copy(ds_copy / DATA, ds_copy / "data/chunk-000/file-001.parquet")
    with pytest.raises(ValueError, match="file-001.parquet: data file not referenced by any episode"):
        LeRobotDataset(ds_copy)


def test_bad_arguments(clean):
    with pytest.raises(ValueError, match="not multiples of 1/fps"):
        LeRobotDataset(clean, delta_timestamps={"action": [0, 0.05]})
    with pytest.raises(ValueError, match="'nope' is not a feature"):
        LeRobotDataset(clean, delta_timestamps={"nope": [0]})
    with pytest.raises(ValueError, match=r"episodes \[7\] do not exist"):
        LeRobotDataset(clean, episodes=[0, 7])
    with pytest.raises(ValueError, match="not camera features"):
        LeRobotDataset(clean, camera_keys=["observation.images.side"])
    with pytest.raises(ValueError, match="only 'pyav'"):
        LeRobotDataset(clean, video_backend="torchcodec")
    with pytest.raises(IndexError):
        LeRobotDataset(clean)[30]


def test_windows_pad_at_both_ends(clean):
    ds = LeRobotDataset(
        clean,
        delta_timestamps={
            "observation.state": [-0.2, -0.1, 0],
            "action": [0, 0.1, 0.2, 0.3],
            "observation.images.top": [-0.1, 0],
        },
    )
    item = ds[10]  # episode 1, frame 0
    assert item["observation.state"][:, 0].tolist() == [100, 100, 100]
    assert item["observation.state_is_pad"].tolist() == [True, True, False]
    assert item["observation.images.top"].shape == (2, 3, 16, 16)
    assert item["observation.images.top_is_pad"].tolist() == [True, False]
    last = ds[29]
    assert last["action"][:, 1].tolist() == [9, 9, 9, 9] and last["action_is_pad"].tolist() == [
        False,
        True,
        True,
        True,
    ]
    assert ds[-1]["index"].item() == 29


def test_camera_keys_empty_skips_decoding(clean):
    ds = LeRobotDataset(clean, camera_keys=[])
    item = ds[3]
    assert "observation.images.top" not in item and ds.feature_spec().cameras == {"top": (3, 16, 16)}
    assert ds._cache_used == 0


def test_uncached_decoding_matches_cache_and_cache_is_bounded(clean):
    cached = LeRobotDataset(clean, delta_timestamps={"observation.images.top": [-0.1, 0]})
    direct = LeRobotDataset(clean, delta_timestamps={"observation.images.top": [-0.1, 0]}, cache_video=False)
    for i in (0, 9, 15, 29):
        assert torch.equal(cached[i]["observation.images.top"], direct[i]["observation.images.top"])
    assert direct._cache_used == 0
    one_episode = 10 * 16 * 16 * 3
    small = LeRobotDataset(clean, cache_mb=1.5 * one_episode / 2**20)
    for i in (0, 10, 20):
        small[i]
    assert small._cache_used == one_episode and len(small._cache) == 1


def test_pickle_drops_lazy_cache_but_keeps_preload(clean):
    ds = LeRobotDataset(clean)
    ds[0]
    assert ds._cache_used > 0
    assert pickle.loads(pickle.dumps(ds))._cache_used == 0
    ds.preload()
    again = pickle.loads(pickle.dumps(ds))
    assert again._cache_used == 3 * 10 * 16 * 16 * 3
    assert torch.equal(again[25]["observation.images.top"], ds[25]["observation.images.top"])


def test_dataloader_workers_return_the_same_values(clean):
    ds = LeRobotDataset(clean, delta_timestamps={"action": [0, 0.1], "observation.images.top": [0]})
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2)
    batches = list(loader)
    assert sum(len(b["index"]) for b in batches) == 30
    b = batches[1]
    ref = [ds[i] for i in range(8, 16)]
    assert torch.equal(b["action"], torch.stack([r["action"] for r in ref]))
    assert torch.equal(b["observation.images.top"], torch.stack([r["observation.images.top"] for r in ref]))
    assert b["task"] == [r["task"] for r in ref]


def test_empty_dataset_and_corrupt_png(tmp_path):
    LeRobotDatasetWriter.create(tmp_path / "empty", 10, FEATURES).finalize()
    with pytest.raises(ValueError, match="no episodes to load"):
        LeRobotDataset(tmp_path / "empty")
    root = tmp_path / "png"
    with LeRobotDatasetWriter.create(root, 10, FEATURES, use_videos=False) as w:
        write_episodes(w, range(2), length=4)
    t = pq.read_table(root / DATA)
    col = t.column("observation.images.top").combine_chunks()
    cells = col.to_pylist()
    cells[5]["bytes"] = cells[5]["bytes"][:40]
    import pyarrow as pa

    t = t.set_column(
        t.column_names.index("observation.images.top"),
        "observation.images.top",
        pa.array(cells, type=col.type),
    )
    pq.write_table(t, root / DATA)
    ds = LeRobotDataset(root)
    assert ds[0]["observation.images.top"].shape == (3, 16, 16)
    with pytest.raises(
        ValueError, match=r"file-000.parquet column 'observation.images.top' row \d+: corrupt image"
    ):
        ds[5]


def test_training_stats_use_exact_action_quantiles(tmp_path):
    # action dim 0 is the episode index: 0 in episode 0, 1 in episode 1 (two modes, like a gripper
    # held open in one task and closed in another)
    root = tmp_path / "bimodal"
    with LeRobotDatasetWriter.create(root, 10, FEATURES) as w:
        write_episodes(w, [0, 1])
    ds = LeRobotDataset(root, camera_keys=[])
    stored, exact = ds.stats["action"], ds.training_stats()["action"]
    assert stored["q01"][0] == pytest.approx(0.5, abs=1e-3)  # mean of the per-episode q01: no data there
    assert exact["q01"][0] == pytest.approx(0.0) and exact["q99"][0] == pytest.approx(1.0)
    assert exact["q50"][1] == pytest.approx(5.5)  # dim 1 is the frame index 0..11 in both episodes
    assert exact["min"] is stored["min"] and ds.stats["action"]["q01"][0] == stored["q01"][0]  # stats.json untouched
