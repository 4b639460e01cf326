import json

import numpy as np
import pytest

from robopolicy.deploy.timing import Tick, TimingLog


def _log():
    log = TimingLog(hz=10)
    starts = [0.0, 0.101, 0.2, 0.35, 0.4]  # periods 101, 99, 150, 50 ms
    for k, t in enumerate(starts):
        log.record(Tick(episode=0, tick=k, t_sched=0.1 * k, t_start=t, t_applied=t + 0.01, obs_age=0.002 * k,
                        latency=0.03 if k % 2 == 0 else float("nan"), hold="stale_obs" if k == 3 else "",
                        deadline_miss=k == 3, skipped=1 if k == 4 else 0))
    # A second episode: the gap between episodes is not a loop period.
    log.record(Tick(episode=1, tick=0, t_sched=5.0, t_start=5.0, t_applied=5.001, obs_age=0.0, latency=0.05,
                    hold="", deadline_miss=False))
    log.record(Tick(episode=1, tick=1, t_sched=5.1, t_start=5.1, t_applied=5.101, obs_age=0.0, latency=float("nan"),
                    hold="inference_late", deadline_miss=False))
    return log


def test_summary_values():
    s = _log().summary()
    assert s["ticks"] == 7 and s["episodes"] == 2 and s["skipped_ticks"] == 1
    periods = np.array([101, 99, 150, 50, 100])
    assert s["period_ms"]["p50"] == pytest.approx(np.percentile(periods, 50))
    assert s["period_ms"]["max"] == pytest.approx(150)
    jitter = np.abs(periods - 100)
    assert s["jitter_ms"]["p50"] == pytest.approx(np.percentile(jitter, 50), abs=1e-6)
    assert s["jitter_ms"]["p99"] == pytest.approx(np.percentile(jitter, 99), abs=1e-6)
    assert s["deadline_misses"] == 2  # one late command + one skipped tick
    assert s["deadline_miss_rate"] == pytest.approx(2 / 8)
    assert s["inference"]["chunks"] == 4
    assert s["inference"]["latency_ms_p50"] == pytest.approx(30)
    assert s["inference"]["latency_ms_max"] == pytest.approx(50)
    assert s["holds"] == {"stale_obs": 1, "inference_late": 1}
    assert s["wake_late_ms"]["p99"] == pytest.approx(np.percentile([0, 1, 0, 50, 0, 0, 0], 99), abs=1e-6)
    one = _log().episode(1).summary()
    assert one["ticks"] == 2 and one["period_ms"]["p50"] == pytest.approx(100)


def test_empty_log_and_bad_rate():
    assert TimingLog(20).summary() == {"hz": 20.0, "ticks": 0, "skipped_ticks": 0}
    with pytest.raises(ValueError, match="hz must be > 0"):
        TimingLog(0)


def test_save_and_plot(tmp_path):
    log = _log()
    files = log.save(tmp_path)
    rows = files["csv"].read_text().splitlines()
    assert rows[0].startswith("episode,tick,t_sched") and len(rows) == 8
    assert json.loads(files["summary"].read_text())["deadline_misses"] == 2
    png = log.plot(tmp_path / "t.png", title="test")
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
