"""Dataset statistics follow lerobot's definitions (histogram quantiles, count-weighted aggregation)."""

from __future__ import annotations

import numpy as np
import pytest

from robopolicy.data.stats import aggregate_stats, image_stats, sample_frame_indices, vector_stats


def test_vector_stats_match_lerobot_episode_values():
    # lerobot 0.6.1 stored these for a 20-frame episode whose values are 0..19 (fixture README).
    s = vector_stats(np.arange(20, dtype=np.float32)[:, None].repeat(4, axis=1))
    assert s["min"].tolist() == [0.0] * 4 and s["max"].tolist() == [19.0] * 4
    assert s["mean"][0] == 9.5
    assert s["std"][0] == pytest.approx(5.7662811279296875, rel=1e-7)
    assert s["count"].tolist() == [20]
    assert s["q01"][0] == pytest.approx(-1e-10, abs=1e-12)
    assert s["q10"][0] == pytest.approx(1.0032, rel=1e-6)
    assert s["q50"][0] == pytest.approx(9.0022, rel=1e-6)
    assert s["q90"][0] == pytest.approx(17.0012, rel=1e-6)
    assert s["q99"][0] == pytest.approx(18.99924, rel=1e-6)


def test_scalar_column_stats_have_shape_1():
    s = vector_stats(np.arange(5, dtype=np.int64))
    assert all(v.shape == (1,) for v in s.values())
    assert s["std"][0] == pytest.approx(np.std(np.arange(5)))


def test_single_frame_quantiles_are_the_value():
    s = vector_stats(np.array([[3.0, -1.0]], dtype=np.float32))
    assert s["q01"].tolist() == [3.0, -1.0] and s["std"].tolist() == [0.0, 0.0]


def test_aggregate_is_pooled_over_episodes():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 3)).astype(np.float32), rng.normal(3, 2, size=(50, 3)).astype(np.float32)
    agg = aggregate_stats([{"x": vector_stats(a)}, {"x": vector_stats(b)}])["x"]
    both = np.concatenate([a, b]).astype(np.float64)
    np.testing.assert_allclose(agg["mean"], both.mean(0), rtol=1e-5)
    np.testing.assert_allclose(agg["std"], both.std(0), rtol=1e-4)
    np.testing.assert_array_equal(agg["min"], both.min(0))
    assert agg["count"].tolist() == [80]
    # quantiles: count-weighted mean of the episodes' quantiles (lerobot 0.4-0.6)
    qa, qb = vector_stats(a)["q50"], vector_stats(b)["q50"]
    np.testing.assert_allclose(agg["q50"], (30 * qa + 50 * qb) / 80)


def test_image_stats_per_channel_in_unit_range():
    frames = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    frames[..., 0] = 255
    frames[..., 2] = np.arange(4)[:, None, None] * 60
    s = image_stats(frames)
    assert s["mean"].shape == (3, 1, 1) and s["count"].tolist() == [4]
    assert s["mean"].ravel().tolist() == pytest.approx([1.0, 0.0, 90 / 255])
    assert s["max"].ravel()[2] == pytest.approx(180 / 255)


def test_image_stats_subsample_long_episodes():
    idx = sample_frame_indices(1000)
    assert len(idx) == 177 and idx[0] == 0 and idx[-1] == 999  # lerobot's estimate_num_samples
    assert len(sample_frame_indices(40)) == 40
    assert image_stats(np.zeros((1000, 4, 4, 3), np.uint8))["count"].tolist() == [177]


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="non-empty"):
        vector_stats(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        image_stats(np.zeros((2, 8, 8), np.uint8))
