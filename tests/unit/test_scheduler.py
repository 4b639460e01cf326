import math

import numpy as np
import pytest

from robopolicy.deploy import (AsyncScheduler, Chunk, ChunkScheduler, SyncScheduler, TemporalEnsembleScheduler,
                               make_scheduler)

DT = 0.1


def chunk(cid: int, n: int = 8, t_obs: float = 0.0, n_envs: int = 2) -> Chunk:
    """Action j of chunk ``cid`` for env e is (100 * cid + j, -e): the value says what ran."""
    a = np.zeros((n_envs, n, 2), np.float32)
    a[:, :, 0] = 100 * cid + np.arange(n)
    a[:, :, 1] = -np.arange(n_envs)[:, None]
    return Chunk(actions=a, t_obs=t_obs, dt=DT)


def test_protocol_and_factory():
    for name, cls in [("sync", SyncScheduler), ("ensemble", TemporalEnsembleScheduler), ("async", AsyncScheduler)]:
        s = make_scheduler(name)
        assert isinstance(s, cls) and isinstance(s, ChunkScheduler)
    assert make_scheduler("async", threshold=3).threshold == 3
    with pytest.raises(ValueError, match="unknown scheduler 'nope'"):
        make_scheduler("nope")
    with pytest.raises(ValueError, match="unexpected keyword"):
        make_scheduler("sync", bogus=1)
    with pytest.raises(ValueError, match="n_action_steps"):
        SyncScheduler(n_action_steps=0)


def test_chunk_validation():
    with pytest.raises(ValueError, match=r"\(B, n>=1, A\)"):
        Chunk(actions=np.zeros((4, 2)), t_obs=0.0, dt=DT)
    with pytest.raises(ValueError, match="dt"):
        Chunk(actions=np.zeros((1, 4, 2)), t_obs=0.0, dt=0.0)
    c = chunk(0, n=5, t_obs=1.0)
    assert len(c) == 5 and c.n_envs == 2 and math.isclose(c.time_of(3), 1.3)


def test_sync_executes_n_action_steps_then_asks_again():
    s = SyncScheduler(n_action_steps=3)
    assert s.needs_inference(0.0) and s.next_action(0.0) is None
    s.push(chunk(1), 0.0)
    got = []
    for step in range(3):
        assert not s.needs_inference(step * DT)
        got.append(s.next_action(step * DT))
    assert [a[0, 0] for a in got] == [100, 101, 102]
    np.testing.assert_array_equal(got[0][:, 1], [0, -1])  # per-env rows kept apart
    assert s.needs_inference(0.3) and s.next_action(0.3) is None
    s.push(chunk(2), 0.3)
    assert s.next_action(0.3)[0, 0] == 200
    with pytest.raises(ValueError, match="does not match"):
        s.push(chunk(3, n_envs=3), 0.4)
    s.reset()
    assert s.needs_inference(0.0) and s.next_action(0.0) is None


def test_ensemble_weights_follow_act():
    s = TemporalEnsembleScheduler(coeff=0.5)
    w = s.weights(3)
    np.testing.assert_allclose(w, np.exp(-0.5 * np.arange(3)) / np.exp(-0.5 * np.arange(3)).sum())
    assert w[0] > w[1] > w[2]  # coeff > 0: the oldest prediction weighs most
    np.testing.assert_allclose(TemporalEnsembleScheduler(coeff=0.0).weights(4), 0.25)


@pytest.mark.parametrize("coeff", [0.0, 0.5, -0.3])
def test_ensemble_averages_every_chunk_covering_the_slot(coeff):
    n = 4
    s = TemporalEnsembleScheduler(coeff=coeff)
    for step in range(7):
        now = step * DT
        assert s.needs_inference(now)
        s.push(chunk(step, n=n, t_obs=now), now)
        assert not s.needs_inference(now)  # one chunk per control period
        got = s.next_action(now)[0, 0]
        # Chunk k predicted 100k + (step - k) for this slot; chunks older than n steps are gone.
        ks = [k for k in range(step + 1) if step - k < n]
        vals = np.array([100 * k + step - k for k in ks], np.float64)
        w = np.exp(-coeff * np.arange(len(ks)))
        assert got == pytest.approx((w * vals).sum() / w.sum(), rel=1e-6)
        assert len(s._chunks) <= n
    assert s.stats["chunks"] == 7 and s.stats["ensembled"] == 6


def test_ensemble_aligns_late_chunks_by_observation_time():
    s = TemporalEnsembleScheduler(coeff=0.0)
    s.push(chunk(1, n=5, t_obs=0.8), now=1.0)      # computed from the obs at 0.8, arrives at 1.0
    assert s.next_action(1.0)[0, 0] == 102        # slot of 1.0 is its action 2
    s.push(chunk(2, n=5, t_obs=0.9), now=1.1)
    assert s.next_action(1.1)[0, 0] == pytest.approx((103 + 202) / 2)
    assert s.next_action(1.3)[0, 0] == 204        # chunk 1 covers 0.8-1.2 only
    assert len(s._chunks) == 1                    # and is dropped once past
    assert s.next_action(1.4) is None


def test_async_requests_below_threshold():
    s = AsyncScheduler(threshold=3)
    assert s.needs_inference(0.0)
    s.push(chunk(1, n=8, t_obs=0.0), 0.0)
    needs = []
    for step in range(8):
        needs.append(s.needs_inference(step * DT))
        assert s.next_action(step * DT)[0, 0] == 100 + step
    # At step k, 8 - k actions remain (the current one included): ask once fewer than 3 remain.
    assert needs == [False] * 6 + [True, True]
    assert s.next_action(0.8) is None
    assert AsyncScheduler().needs_inference(0.0)
    d = AsyncScheduler()  # default threshold: half the chunk
    d.push(chunk(1, n=8), 0.0)
    assert [d.needs_inference(k * DT) for k in range(6)] == [False] * 5 + [True]


def test_async_skips_actions_whose_time_passed():
    s = AsyncScheduler(threshold=4)
    s.push(chunk(1, n=8, t_obs=0.0), 0.0)
    for step in range(5):
        s.next_action(step * DT)
    # Requested at step 4 from the obs of 0.4; it arrives 0.23 s later, in the slot of 0.6.
    s.push(chunk(2, n=8, t_obs=0.4), now=0.63)
    assert s.stats["skipped"] == 2           # its actions for 0.4 and 0.5 are stale
    assert s.next_action(0.63)[0, 0] == 202
    assert s.next_action(0.73)[0, 0] == 203
    # Float round-off in now = sum of steps must not shift slots.
    t = sum([DT] * 9)  # 0.8999999999999999
    assert s.next_action(t)[0, 0] == 205     # a missed call: action 204 is skipped, not run late
    assert s.stats["skipped"] == 3
    assert s.remaining(t + 1e-9) == 2


def test_async_keeps_old_chunk_when_new_one_is_all_stale():
    s = AsyncScheduler(threshold=2)
    s.push(chunk(1, n=8, t_obs=0.0), 0.0)
    s.next_action(0.0)
    s.push(chunk(2, n=4, t_obs=0.0), now=0.5)   # 4 actions for 0.0-0.3: all in the past
    assert s.stats["dropped"] == 1
    assert s.next_action(0.5)[0, 0] == 105


def test_async_with_latency_never_runs_dry_when_threshold_covers_it():
    """Closed loop: one request in flight at a time, L control periods of latency."""
    n, L = 6, 2
    s = AsyncScheduler(threshold=L + 1)
    pending, executed, cid = None, [], 0
    for step in range(30):
        now = step * DT
        if pending and pending[1] <= step:
            s.push(pending[0], now)
            pending = None
        if pending is None and s.needs_inference(now):
            cid += 1
            c = chunk(cid, n=n, t_obs=now)
            if step == 0:
                s.push(c, now)
            else:
                pending = (c, step + L)
        a = s.next_action(now)
        assert a is not None, f"ran dry at step {step}"
        executed.append(int(a[0, 0]))
    # Each delivered chunk starts at its action L (the slot of its arrival), never at 0 late.
    starts = [v for i, v in enumerate(executed) if i > 0 and v // 100 != executed[i - 1] // 100]
    assert all(v % 100 == L for v in starts)
    assert s.stats["skipped"] == L * len(starts)
