import threading
import time

import numpy as np
import pytest
from deploy_fakes import ClockSource, FlakySource, RecordingRobot
from eval_fakes import GoalPolicy, PointSuite

from robopolicy.deploy import (ControlLoop, PolicySource, RealClock, SafetyConfig, SimClock, SimRobot, TimingLog,
                               make_scheduler)
from robopolicy.deploy.loop import LoopConfig
from robopolicy.deploy.testing import FrozenObservations
from robopolicy.eval import evaluate

WIDE = SafetyConfig(action_low=[-1e9], action_high=[1e9])  # ClockSource actions are times


@pytest.mark.parametrize("sched", ["sync", "ensemble", "async"])
def test_sim_clock_loop_reproduces_the_evaluator(sched):
    suite = PointSuite(max_steps=30)
    policy = GoalPolicy(n_action_steps=4, n_obs_steps=2)
    res = evaluate(policy, suite, episodes=4, tasks=["reach-b"], n_envs=1, scheduler=sched, progress=False,
                   vector="sync")
    clock = SimClock()
    robot = SimRobot(suite, "reach-b", clock=clock)
    with ControlLoop(robot, PolicySource(policy, dt=0.1), make_scheduler(sched), LoopConfig(hz=10),
                     clock=clock) as loop:
        eps = [loop.run_episode(seed=suite.trial_seed("reach-b", i, "eval")) for i in range(4)]
    assert [(e["success"], e["length"]) for e in res["per_episode"]] == [(e.success, e.steps) for e in eps]
    assert all(e.stop_reason == "success" for e in eps)
    t = eps[0].timing
    assert t["period_ms"]["max"] == pytest.approx(100) and t["deadline_misses"] == 0
    # The same chunks were requested as in the evaluator.
    assert sum(e.timing["inference"]["chunks"] for e in eps) == res["latency"]["calls"]


def test_async_inference_skips_the_actions_whose_time_passed():
    """Inference takes ~2.3 periods: each executed action is the one planned for that tick."""
    hz, dt = 50.0, 0.02
    clock = RealClock()
    robot = RecordingRobot(clock)
    src = ClockSource(dt, n=8, latency_s=0.045)
    with ControlLoop(robot, src, make_scheduler("async", threshold=4), LoopConfig(hz=hz, max_steps=40),
                     safety=WIDE, clock=clock) as loop:
        res = loop.run_episode()
    cmds, times = robot.commands, np.array([t for t, _ in robot.sent])
    live = np.flatnonzero(cmds[:, 1] > 0)  # ticks that ran a policy action (not a hold)
    assert live[0] in (2, 3)  # the first chunk arrives after ~45 ms; the robot holds until then
    np.testing.assert_array_equal(cmds[: live[0]], 0)
    assert res.safety_stats["hold:inference_late"] == live[0]
    # Every executed action was planned for (about) the tick it ran in, whichever chunk it came from.
    planned_for, ran_at = cmds[live, 0], times[live]
    assert np.abs(planned_for - ran_at).max() < 0.6 * dt + 0.01
    assert res.scheduler_stats["skipped"] >= 2 * (res.scheduler_stats["chunks"] - 1)
    assert cmds[live, 1].max() >= 4  # several chunks took over from one another
    assert res.timing["inference"]["latency_ms_p50"] == pytest.approx(45, abs=15)
    assert len(live) >= 30  # after the start, no more holds: the next chunk always came in time


def test_sync_scheduler_holds_while_a_slow_chunk_is_late():
    clock = RealClock()
    robot = RecordingRobot(clock)
    src = ClockSource(0.02, n=4, latency_s=0.05)  # 2.5 periods per chunk, 4 actions per chunk
    with ControlLoop(robot, src, make_scheduler("sync"), LoopConfig(hz=50, max_steps=20), safety=WIDE,
                     clock=clock) as loop:
        res = loop.run_episode()
    holds = res.safety_stats.get("hold:inference_late", 0)
    assert 6 <= holds <= 12 and res.steps == 20
    # The wait inside a tick stops at its deadline: the loop itself stays on time.
    assert res.timing["period_ms"]["p50"] == pytest.approx(20, abs=2)
    assert res.timing["skipped_ticks"] <= 1


def test_stale_observations_hold_then_stop_the_run():
    clock = RealClock()
    suite = PointSuite(max_steps=1000)
    robot = FrozenObservations(SimRobot(suite, "reach-a", clock=clock), freeze_after=5)
    policy = GoalPolicy(n_action_steps=4, n_obs_steps=1)
    safety = SafetyConfig(stale_obs_s=0.04, stale_stop_s=0.1)
    with ControlLoop(robot, PolicySource(policy, dt=0.01), make_scheduler("sync"),
                     LoopConfig(hz=100, stop_on_success=False), safety=safety, clock=clock) as loop:
        t = time.monotonic()
        res = loop.run_episode(seed=1)
        wall = time.monotonic() - t
    assert res.stop_reason == "stale_obs" and wall < 1.0
    holds = [tick for tick in res.log.ticks if tick.hold == "stale_obs"]
    assert 8 <= len(holds) <= 14  # 0.1 s of holding at 100 Hz before the stop
    first_hold = res.log.ticks.index(holds[0])
    assert first_hold in range(8, 12)  # 5 steps + 40 ms of staleness, at 10 ms per tick
    assert all(np.all(a == 0) for a in robot.applied[first_hold:])  # held until the end
    assert not any(np.all(a == 0) for a in robot.applied[:5])


def test_emergency_stop_from_another_thread():
    clock = RealClock()
    robot = RecordingRobot(clock)
    loop = ControlLoop(robot, ClockSource(0.01, n=4), make_scheduler("sync"), LoopConfig(hz=100), safety=WIDE,
                       clock=clock)
    timer = threading.Timer(0.1, loop.estop.trigger, args=("test",))
    timer.start()
    try:
        res = loop.run_episode()
    finally:
        timer.cancel()
        loop.close()
    assert res.stop_reason == "estop" and 5 <= res.steps <= 20
    np.testing.assert_array_equal(robot.commands[-1], 0)
    assert loop.estop.reason == "test"


def test_connection_errors_hold_the_robot_and_the_loop_recovers():
    suite = PointSuite(max_steps=40)
    clock = SimClock()
    robot = SimRobot(suite, "reach-a", clock=clock)
    policy = GoalPolicy(n_action_steps=4, n_obs_steps=2)
    src = FlakySource(PolicySource(policy, dt=0.1), fail_calls={2, 3, 4})
    with ControlLoop(robot, src, make_scheduler("sync"), LoopConfig(hz=10), clock=clock) as loop:
        res = loop.run_episode(seed=suite.trial_seed("reach-a", 0, "eval"))
    assert res.success and res.inference_errors == 3
    assert res.safety_stats["hold:server_down"] == 3
    holds = [t.tick for t in res.log.ticks if t.hold]
    assert holds == [4, 5, 6]  # the second chunk was due at tick 4


def test_a_bug_in_the_source_holds_then_raises():
    clock = SimClock()
    robot = RecordingRobot(clock)
    src = FlakySource(ClockSource(0.1, n=2), fail_calls={2}, error=ValueError("bad obs key"))
    with ControlLoop(robot, src, make_scheduler("sync"), LoopConfig(hz=10), safety=WIDE, clock=clock) as loop:
        with pytest.raises(ValueError, match="bad obs key"):
            loop.run_episode()
    np.testing.assert_array_equal(robot.commands[-1], 0)
    assert len(robot.sent) == 3


def test_a_loop_that_falls_behind_skips_ticks():
    clock = RealClock()
    robot = RecordingRobot(clock, apply_sleep={3: 0.035})  # one 35 ms stall at 100 Hz
    log = TimingLog(100)
    with ControlLoop(robot, ClockSource(0.01, n=4), make_scheduler("sync"), LoopConfig(hz=100, max_steps=10),
                     safety=WIDE, clock=clock) as loop:
        res = loop.run_episode(log=log)
        res2 = loop.run_episode(log=log)
    assert res.timing["skipped_ticks"] in (2, 3) and res.timing["deadline_misses"] >= 3
    ticks = [t.tick for t in log.ticks if t.episode == 0]
    assert ticks[:4] == [0, 1, 2, 3] and ticks[4] in (6, 7)
    assert res2.steps == 10 and log.summary()["episodes"] == 2


def test_final_command_is_a_hold_and_config_errors():
    clock = SimClock()
    robot = RecordingRobot(clock)
    with ControlLoop(robot, ClockSource(0.1, n=8), make_scheduler("sync"), LoopConfig(hz=10, max_steps=3),
                     safety=WIDE, clock=clock) as loop:
        res = loop.run_episode()
    assert res.stop_reason == "max_steps" and res.steps == 3 and len(robot.sent) == 4
    np.testing.assert_array_equal(robot.commands[-1], 0)
    assert res.safety_stats["hold:end"] == 1
    with pytest.raises(ValueError, match="hz must be > 0"):
        LoopConfig(hz=0)
    with pytest.raises(ValueError, match="max_steps"):
        LoopConfig(max_steps=0)
