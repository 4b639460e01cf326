import json

import av
import numpy as np
import pytest
import torch
from eval_fakes import ExpertPolicy, GoalPolicy, PointSuite, ZeroPolicy, features, steps_to_goal

from robopolicy.eval import evaluate


def expected_lengths(suite, task, trials, split="eval"):
    """Steps the exact planner needs from each trial's initial state (replayed in a fresh env)."""
    env = suite.make_env(task)
    out = []
    for t in trials:
        obs, _ = env.reset(seed=suite.trial_seed(task, t, split))
        s = obs["observation.state"]
        out.append(steps_to_goal(s[:2], s[2:]))
    return out


def test_planner_succeeds_on_every_task_with_exact_lengths(tmp_path):
    suite = PointSuite()
    r = evaluate(GoalPolicy(n_action_steps=4), suite, episodes=3, n_envs=2, vector="sync", out_dir=tmp_path,
                 n_videos=3, progress=False, seed=0)
    assert r["success_rate"] == 1.0 and r["episodes"] == 6 and r["successes"] == 6
    assert r["ci95"] == pytest.approx([0.6097, 1.0], abs=1e-4)
    for task in suite.tasks:
        rows = [e for e in r["per_episode"] if e["task"] == task]
        assert [e["trial"] for e in rows] == [0, 1, 2]  # the padding slot of the 2nd batch is dropped
        assert [e["seed"] for e in rows] == [suite.trial_seed(task, t, "eval") for t in range(3)]
        assert [e["length"] for e in rows] == expected_lengths(suite, task, range(3))
        assert r["tasks"][task]["mean_length"] == pytest.approx(np.mean([e["length"] for e in rows]))
    # Files: json (same content), table, plot, videos (render() of a state suite; trial 0 of each task first).
    info = json.loads((tmp_path / "eval_info.json").read_text())
    assert info["per_episode"] == r["per_episode"] and info["latency"]["calls"] > 0
    assert "| reach-a | 100.0% (3/3) |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "success.png").stat().st_size > 1000
    vids = sorted(p.name for p in (tmp_path / "videos").glob("*.mp4"))
    assert vids == ["reach-a_trial000_success.mp4", "reach-a_trial001_success.mp4", "reach-b_trial000_success.mp4"]
    ep = next(e for e in r["per_episode"] if e["task"] == "reach-a" and e["trial"] == 0)
    with av.open(ep["video"]) as c:
        n_frames = sum(1 for _ in c.decode(video=0))
    assert n_frames == ep["length"] + 1  # the reset frame, then one per step until success


def test_first_trial_evaluates_a_later_block_of_initial_states(tmp_path):
    suite = PointSuite()
    r = evaluate(GoalPolicy(n_action_steps=4), suite, episodes=3, n_envs=2, vector="sync", video_dir=tmp_path,
                 n_videos=1, progress=False, seed=0, first_trial=5, tasks=[suite.tasks[0]])
    task = suite.tasks[0]
    assert [e["trial"] for e in r["per_episode"]] == [5, 6, 7]
    assert [e["seed"] for e in r["per_episode"]] == [suite.trial_seed(task, t, "eval") for t in (5, 6, 7)]
    assert [e["length"] for e in r["per_episode"]] == expected_lengths(suite, task, (5, 6, 7))
    assert [p.name.split("_trial")[1][:3] for p in tmp_path.glob("*.mp4")] == ["005"]  # the block's first trial


def test_failures_count_and_last_to_the_step_limit():
    r = evaluate(ZeroPolicy(), PointSuite(max_steps=12), episodes=2, n_envs=2, vector="sync", n_videos=0,
                 progress=False, tasks=["reach-b"])
    assert r["success_rate"] == 0.0 and list(r["tasks"]) == ["reach-b"]
    assert [e["length"] for e in r["per_episode"]] == [12, 12]
    assert r["ci95"][0] == 0.0 and r["ci95"][1] == pytest.approx(0.6576, abs=1e-4)
    assert r["out_dir"] is None and "files" not in r


@pytest.mark.parametrize("scheduler, kwargs, latency", [
    ("ensemble", {"coeff": 0.01}, 0),
    ("async", {"threshold": 3}, 2),
    ("ensemble", {}, 1),
])
def test_other_schedulers_reach_the_goal(scheduler, kwargs, latency):
    suite = PointSuite()
    r = evaluate(GoalPolicy(n_action_steps=6), suite, episodes=2, n_envs=2, scheduler=scheduler,
                 scheduler_kwargs=kwargs, latency_steps=latency, vector="sync", n_videos=0, progress=False,
                 tasks=["reach-a"])
    assert r["success_rate"] == 1.0
    # The exact planner makes the same path whatever the schedule, delays included.
    assert [e["length"] for e in r["per_episode"]] == expected_lengths(suite, "reach-a", range(2))
    if scheduler == "async":
        # One batch: its first chunk is waited for, each later one arrives `latency` slots late.
        assert r["scheduler_stats"]["skipped"] == latency * (r["scheduler_stats"]["chunks"] - 1)


def test_deterministic_given_seed_and_caller_rng_untouched():
    suite = PointSuite(max_steps=30)

    def run(seed):
        return [(e["success"], e["length"]) for e in evaluate(
            GoalPolicy(n_action_steps=2, noise=1.5), suite, episodes=4, n_envs=2, vector="sync", n_videos=0,
            progress=False, seed=seed, tasks=["reach-a"])["per_episode"]]

    torch.manual_seed(123)
    a = run(0)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # evaluate restored the caller's RNG
    assert run(0) == a
    assert any(run(s) != a for s in (1, 2))
    torch.manual_seed(7)
    b = run(None)  # seed drawn from torch's RNG: reproducible through torch.manual_seed
    torch.manual_seed(7)
    assert run(None) == b


def test_image_suite_videos_come_from_the_first_camera(tmp_path):
    suite = PointSuite(camera=True, render_mode=None)  # render() unavailable: the camera is used
    policy = GoalPolicy(feats=features(cameras={"cam": (3, 8, 8)}))
    r = evaluate(policy, suite, episodes=1, n_envs=1, video_dir=tmp_path, n_videos=1, progress=False,
                 tasks=["reach-a"])
    assert r["obs"] == "image" and r["success_rate"] == 1.0 and r["n_envs"] == 1
    with av.open(r["videos"][0]) as c:
        assert next(c.decode(video=0)).to_ndarray(format="rgb24").shape == (8, 8, 3)


def test_state_suite_without_render_skips_videos_and_says_so(tmp_path):
    r = evaluate(GoalPolicy(), PointSuite(render_mode=None), episodes=1, n_envs=1, out_dir=tmp_path,
                 progress=False, tasks=["reach-a"])
    assert r["videos"] == [] and "render() returned None" in r["videos_note"]


def test_bad_arguments():
    suite = PointSuite()
    with pytest.raises(ValueError, match="trained at 20.0 fps"):
        evaluate(GoalPolicy(feats=features(fps=20.0)), suite, episodes=1, progress=False)
    with pytest.raises(ValueError, match="no task 'nope'"):
        evaluate(GoalPolicy(), suite, episodes=1, tasks=["nope"], progress=False)
    with pytest.raises(ValueError, match="latency_steps > 0 needs"):
        evaluate(GoalPolicy(), suite, episodes=1, latency_steps=2, progress=False)
    with pytest.raises(ValueError, match="unknown scheduler"):
        evaluate(GoalPolicy(), suite, episodes=1, scheduler="fifo", progress=False)
    with pytest.raises(TypeError, match="expected a Policy"):
        evaluate(object(), suite, episodes=1, progress=False)
    with pytest.raises(ValueError, match="seed_split"):
        evaluate(GoalPolicy(), suite, episodes=1, seed_split="test", progress=False)
    with pytest.raises(ValueError, match="first_trial"):
        evaluate(GoalPolicy(), suite, episodes=1, first_trial=-1, progress=False)


def test_pushblock_expert_in_worker_processes(tmp_path):
    """The real suite in AsyncVectorEnv workers (both cores), videos from env.render()."""
    envs = pytest.importorskip("envs")
    suite = envs.make_suite("pushblock")
    policy = ExpertPolicy(suite, "pushblock", state_dim=10, action_dim=2)
    r = evaluate(policy, "pushblock", episodes=2, n_envs=2, out_dir=tmp_path, n_videos=1, progress=False)
    assert r["success_rate"] == 1.0 and r["episodes"] == 2
    assert all(e["length"] < suite.max_episode_steps("pushblock") for e in r["per_episode"])
    assert (tmp_path / "eval_info.json").exists() and (tmp_path / "success.png").exists()
    with av.open(r["videos"][0]) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == r["per_episode"][0]["length"] + 1 and frames[-1].std() > 0
