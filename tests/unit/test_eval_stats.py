import json

import av
import numpy as np
import pytest

from robopolicy.eval import latency_stats, wilson_interval
from robopolicy.eval.report import plot_success, results_table, write_json
from robopolicy.eval.video import write_mp4


@pytest.mark.parametrize("k, n, lo, hi", [
    (8, 10, 0.4902, 0.9433),     # textbook values of the 95% Wilson score interval
    (50, 100, 0.4038, 0.5962),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (1, 1, 0.2065, 1.0),
    (45, 50, 0.7864, 0.9565),
])
def test_wilson_interval_values(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)


def test_wilson_edges_and_errors():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 7)[0] == 0.0 and wilson_interval(7, 7)[1] == 1.0
    lo90, hi90 = wilson_interval(8, 10, z=1.6448536)
    lo95, hi95 = wilson_interval(8, 10)
    assert lo95 < lo90 < 0.8 < hi90 < hi95
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_latency_stats_reports_warmup_separately():
    s = latency_stats([1.0, 0.1, 0.2, 0.3])
    assert s["calls"] == 4 and s["first_s"] == 1.0
    assert s["mean_s"] == pytest.approx(0.2) and s["max_s"] == pytest.approx(0.3) and s["p50_s"] == pytest.approx(0.2)
    assert latency_stats([]) == {"calls": 0}


def test_write_mp4_roundtrip_odd_size(tmp_path):
    frames = [np.full((15, 21, 3), 10 * i, np.uint8) for i in range(6)]
    path = write_mp4(tmp_path / "v" / "a.mp4", frames, fps=10)
    with av.open(str(path)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == 6 and decoded[0].shape == (16, 22, 3)  # padded to even sizes
    assert abs(float(decoded[5].mean()) - 50) < 3
    assert not list(tmp_path.glob("v/.*"))  # no temp file left
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "b.mp4", [np.zeros((4, 4, 3), np.float32)], fps=10)
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(tmp_path / "c.mp4", [], fps=10)


def test_table_and_plot(tmp_path):
    result = {"suite": "s", "scheduler": "sync", "episodes": 20, "success_rate": 0.55, "ci95": [0.34, 0.74],
              "mean_length": 30.0, "tasks": {
                  "a": {"success_rate": 0.8, "ci95": list(wilson_interval(8, 10)), "successes": 8, "episodes": 10,
                        "mean_length": 20.0},
                  "b": {"success_rate": 0.3, "ci95": list(wilson_interval(3, 10)), "successes": 3, "episodes": 10,
                        "mean_length": 40.0}}}
    table = results_table(result).splitlines()
    assert table[2] == "| a | 80.0% (8/10) | 49.0% - 94.3% | 20.0 | 10 |"
    assert table[-1].startswith("| **average (2 tasks)** | 55.0% | 34.0% - 74.0%")
    png = plot_success(result, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    write_json(result, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["tasks"]["a"]["successes"] == 8
