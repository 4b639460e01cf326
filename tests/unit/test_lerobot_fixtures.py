"""Our reader against datasets written by lerobot itself (0.3.2, 0.4.4, 0.6.1), checked with the
values lerobot returned for them (see ../shared/fixtures/lerobot/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from robopolicy.data import LeRobotDataset
from shared_fixtures import LEROBOT_FIXTURES, missing_reason

FIXTURES = LEROBOT_FIXTURES
NAMES = [
    "v30_image_lerobot044",
    "v30_video_lerobot044",
    "v30_video_lerobot061",
    "v21_image_lerobot032",
    "v21_video_lerobot032",
]
DELTA = {"action": [k / 10 for k in range(8)], "observation.state": [-0.1, 0.0]}

pytestmark = pytest.mark.skipif(
    not FIXTURES.is_dir(),
    reason=missing_reason(FIXTURES),
)


def drawn_pixels() -> np.ndarray:
    """The (40, 32, 32, 3) frames the fixtures were written from, in dataset order."""
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(40)])


@pytest.fixture(scope="module", params=NAMES)
def ds(request) -> LeRobotDataset:
    return LeRobotDataset(FIXTURES / request.param, delta_timestamps=DELTA)


def test_every_fixture_folder_is_covered():
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(NAMES)


def test_sizes_and_meta(ds):
    assert len(ds) == 40 and ds.num_episodes == 2 and ds.fps == 10
    assert ds.meta.tasks == ["task 0", "task 1"]
    spec = ds.feature_spec(use_language=True)
    assert (spec.action_dim, spec.state_dim, spec.cameras, spec.fps) == (2, 4, {"cam": (3, 32, 32)}, 10.0)
    assert spec.use_language


def test_exact_state_action_and_tasks(ds):
    plain = LeRobotDataset(ds.root)
    for i in range(40):
        ep, frame = divmod(i, 20)
        item = plain[i]
        v = ep * 100 + frame
        assert item["observation.state"].dtype == torch.float32
        assert item["observation.state"].tolist() == [v] * 4
        assert item["action"].tolist() == [v, -frame]
        assert item["task"] == f"task {ep}"
        assert (item["episode_index"].item(), item["frame_index"].item(), item["index"].item()) == (
            ep,
            frame,
            i,
        )
        assert item["task_index"].item() == ep
        assert item["timestamp"].item() == pytest.approx(frame / 10)


def test_item_18_window_with_padding(ds):
    item = ds[18]
    assert item["action"][:, 0].tolist() == [18, 19, 19, 19, 19, 19, 19, 19]
    assert item["action"][:, 1].tolist() == [-18, -19, -19, -19, -19, -19, -19, -19]
    assert item["action_is_pad"].tolist() == [False, False] + [True] * 6
    assert item["observation.state"][:, 0].tolist() == [17, 18]
    assert item["observation.state_is_pad"].tolist() == [False, False]
    first = ds[20]  # episode 1 frame 0: the state window pads backwards within its own episode
    assert first["observation.state"][:, 0].tolist() == [100, 100]
    assert first["observation.state_is_pad"].tolist() == [True, False]


def test_batch_of_8_stacks(ds):
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert batch["action"].shape == (8, 8, 2)
    assert batch["observation.images.cam"].shape == (8, 3, 32, 32)
    assert batch["task"] == ["task 0"] * 8


def test_images_against_drawn_pixels(ds):
    px = drawn_pixels()
    plain = LeRobotDataset(ds.root)
    frames = np.stack([plain[i]["observation.images.cam"].permute(1, 2, 0).numpy() for i in range(40)])
    assert frames.dtype == np.float32 and frames.min() >= 0 and frames.max() <= 1
    if ds.meta.features["observation.images.cam"]["dtype"] == "image":
        np.testing.assert_array_equal(frames, px.astype(np.float32) / 255)
    else:
        # AV1 in yuv420p: luma survives, the 4:2:0 chroma of random noise does not.
        luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        err = np.abs(frames @ luma - (px.astype(np.float32) / 255) @ luma)
        assert err.mean() < 0.03
        # every decoded frame is closest to its own drawn frame (no off-by-one in timestamps)
        dist = np.abs(frames[:, None] - px[None].astype(np.float32) / 255).mean(axis=(2, 3, 4))
        assert (dist.argmin(axis=1) == np.arange(40)).all()


def test_stats_as_lerobot_wrote_them(ds):
    st = ds.meta.stats
    assert st["observation.state"]["mean"].tolist() == pytest.approx([59.5] * 4)
    assert st["observation.state"]["max"].tolist() == [119.0] * 4
    assert st["action"]["min"].tolist() == [0.0, -19.0]
    assert int(np.asarray(st["action"]["count"]).ravel()[0]) == 40
    if ds.meta.version == "v3.0":
        ref = json.loads((ds.root / "meta" / "stats.json").read_text())
        np.testing.assert_allclose(st["action"]["q10"], ref["action"]["q10"])
    else:  # v2.1: aggregated from episodes_stats.jsonl
        assert st["observation.state"]["std"][0] == pytest.approx(50.3314, abs=1e-3)
        assert np.asarray(st["observation.images.cam"]["mean"]).shape == (3, 1, 1)


def test_episode_subset_keeps_absolute_index(ds):
    sub = LeRobotDataset(ds.root, delta_timestamps=DELTA, episodes=[1])
    assert len(sub) == 20
    item = sub[0]
    assert item["index"].item() == 20 and item["episode_index"].item() == 1 and item["task"] == "task 1"
    assert sub[18]["action"][:, 0].tolist() == [118, 119, 119, 119, 119, 119, 119, 119]


def test_image_cells_with_paths_only(tmp_path):
    """v2-style image columns may hold only a path (relative to the dataset root), no bytes."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(shutil.copytree(FIXTURES / "v21_image_lerobot032", tmp_path / "ds"))
    for ep in (0, 1):
        path = root / f"data/chunk-000/episode_{ep:06d}.parquet"
        t = pq.read_table(path)
        rel = [f"images/observation.images.cam/episode_{ep:06d}/frame_{k:06d}.png" for k in range(t.num_rows)]
        col = pa.StructArray.from_arrays(
            [pa.nulls(t.num_rows, pa.binary()), pa.array(rel)], names=["bytes", "path"]
        )
        pq.write_table(
            t.set_column(t.column_names.index("observation.images.cam"), "observation.images.cam", col), path
        )
    ds = LeRobotDataset(root)
    px = drawn_pixels()
    for i in (0, 19, 20, 39):
        np.testing.assert_array_equal(
            ds[i]["observation.images.cam"].permute(1, 2, 0).numpy(), px[i] / np.float32(255)
        )
    (root / "images/observation.images.cam/episode_000001/frame_000003.png").unlink()
    with pytest.raises(FileNotFoundError, match="frame_000003.png not found"):
        LeRobotDataset(root)[23]
