"""Mid-episode perturbation (SimEnv.perturb, evaluate(perturb_step=...)) and per-episode policy
uncertainty in the evaluator."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch
from eval_fakes import ExpertPolicy, GoalPolicy, PointEnv, PointSuite

from envs import STATE_KEY, make_suite
from envs.base import SimEnv
from envs.metaworld_suite import MetaWorldEnv
from envs.pushblock import SUCCESS_RADIUS, PushBlockEnv
from robopolicy.eval import evaluate
from robopolicy.types import PolicyState


# --- the envs ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def push_env():
    env = MetaWorldEnv("push-v3")
    yield env
    env.close()


def _perturbed(env, seed, **kw):
    obs, _ = env.reset(seed=seed)
    before = obs[STATE_KEY].copy()
    return before, env.perturb(**kw)[STATE_KEY]


def test_metaworld_perturb_moves_the_object_by_the_distance(push_env):
    before, after = _perturbed(push_env, 11)
    assert np.linalg.norm(after[4:6] - before[4:6]) == pytest.approx(0.06, abs=1e-5)
    assert after[6] == pytest.approx(before[6], abs=1e-5)          # same height
    assert np.allclose(after[36:39], before[36:39])                 # goal untouched
    assert np.allclose(after[:3], before[:3], atol=1e-6)            # hand untouched
    # The simulator really holds the object there: a no-op step reports it at the new place.
    obs, *_ = push_env.step(np.zeros(4, dtype=np.float32))
    assert np.linalg.norm(obs[STATE_KEY][4:6] - after[4:6]) < 2e-3
    _, far = _perturbed(push_env, 11, distance=0.08)
    assert np.linalg.norm(far[4:6] - before[4:6]) == pytest.approx(0.08, abs=1e-5)


def test_metaworld_perturb_is_deterministic_per_trial_seed(push_env):
    _, a = _perturbed(push_env, 11)
    _, b = _perturbed(push_env, 11)
    _, c = _perturbed(push_env, 12)
    before_c = push_env.reset(seed=12)[0][STATE_KEY]
    assert np.array_equal(a, b)
    direction = lambda after, before: (after[4:6] - before[4:6]) / 0.06  # noqa: E731
    before_a = push_env.reset(seed=11)[0][STATE_KEY]
    assert not np.allclose(direction(a, before_a), direction(c, before_c), atol=1e-3)
    # An explicit generator is used as given.
    _, d = _perturbed(push_env, 11, rng=np.random.default_rng(5))
    _, e = _perturbed(push_env, 11, rng=np.random.default_rng(5))
    assert np.array_equal(d, e)


def test_metaworld_reach_moves_the_goal_and_articulated_tasks_refuse():
    env = MetaWorldEnv("reach-v3")
    try:
        before, after = _perturbed(env, 3)
        assert np.linalg.norm(after[36:38] - before[36:38]) == pytest.approx(0.06, abs=1e-6)
        assert np.allclose(after[4:7], before[4:7])
        assert np.allclose(env.unwrapped_metaworld._target_pos, after[36:39])
    finally:
        env.close()
    env = MetaWorldEnv("drawer-open-v3")
    try:
        env.reset(seed=0)
        with pytest.raises(NotImplementedError, match="drawer-open-v3.*articulated"):
            env.perturb()
    finally:
        env.close()


def test_pushblock_perturb_moves_the_block():
    env = PushBlockEnv()
    for seed in range(5):
        before, after = _perturbed(env, seed)
        assert np.linalg.norm(after[2:4] - before[2:4]) == pytest.approx(0.06, abs=1e-6)
        assert np.allclose(after[[0, 1, 6, 7]], before[[0, 1, 6, 7]])   # pusher and target stay
        assert np.linalg.norm(after[2:4] - after[6:8]) >= SUCCESS_RADIUS  # no free success
        _, again = _perturbed(env, seed)
        assert np.array_equal(after, again)
    env.close()


def test_simenv_without_an_object_says_so():
    class Bare(SimEnv):
        pass

    env = object.__new__(Bare)  # the hook is all that is under test: no simulator needed
    env.task_name, env._episode_seed = "bare-task", 0
    with pytest.raises(NotImplementedError, match="Bare.*bare-task"):
        env.perturb()


# --- the evaluator ------------------------------------------------------------------------------------
class JumpyPointEnv(PointEnv):
    """PointEnv whose ``perturb`` throws the point 0.3 further from the goal, the direction turned by
    an angle seeded by the reset seed."""

    def reset(self, *, seed=None, options=None):
        self._seed = seed
        return super().reset(seed=seed, options=options)

    def perturb(self):
        away = self.pos - self.goal
        ang = np.arctan2(away[1], away[0]) + np.random.default_rng([self._seed, 1]).uniform(-0.5, 0.5)
        self.pos = self.pos + 0.3 * np.array([np.cos(ang), np.sin(ang)])
        return self._obs()


class JumpySuite(PointSuite):
    def env_fn(self, task):
        return functools.partial(JumpyPointEnv, task, self._max_steps, bool(self.cameras), self._render_mode)


def _lengths(r):
    return [e["length"] for e in r["per_episode"]]


def test_evaluate_perturb_step_records_and_changes_the_episodes(tmp_path):
    suite = JumpySuite(max_steps=60)
    kw = dict(episodes=3, n_envs=2, vector="sync", n_videos=0, progress=False, seed=0, tasks=["reach-a"])
    plain = evaluate(GoalPolicy(n_action_steps=2), suite, **kw)
    hit = evaluate(GoalPolicy(n_action_steps=2), suite, perturb_step=2, out_dir=tmp_path, **kw)
    again = evaluate(GoalPolicy(n_action_steps=2), suite, perturb_step=2, **kw)
    assert "perturbed" not in plain["per_episode"][0] and plain["perturb_step"] == 0
    assert hit["perturb_step"] == 2 and hit["perturbed_episodes"] == 3
    assert all(e["perturbed"] for e in hit["per_episode"])
    assert hit["success_rate"] == 1.0  # the closed-loop planner recovers...
    assert all(h > p for h, p in zip(_lengths(hit), _lengths(plain)))  # ...but it takes longer
    assert _lengths(again) == _lengths(hit)  # same trial, same displacement
    info = json.loads((tmp_path / "eval_info.json").read_text())
    assert info["perturb_step"] == 2 and all(e["perturbed"] for e in info["per_episode"])
    # A perturbation after every episode was decided touches none of them.
    late = evaluate(GoalPolicy(n_action_steps=2), suite, perturb_step=59, **kw)
    assert late["perturbed_episodes"] == 0 and _lengths(late) == _lengths(plain)
    with pytest.raises(ValueError, match="perturb_step"):
        evaluate(GoalPolicy(), suite, perturb_step=-1, **kw)


def test_evaluate_perturbs_the_real_pushblock_env():
    suite = make_suite("pushblock")
    policy = ExpertPolicy(suite, "pushblock", state_dim=10, action_dim=2)
    kw = dict(episodes=2, n_envs=2, vector="sync", n_videos=0, progress=False)
    plain = evaluate(policy, "pushblock", **kw)
    hit = evaluate(policy, "pushblock", perturb_step=15, **kw)
    assert all(e["perturbed"] for e in hit["per_episode"])
    assert _lengths(hit) != _lengths(plain)


class UncertainPolicy(GoalPolicy):
    """GoalPolicy reporting ``uncertainty`` = the number of this episode's calls so far (a (B,)
    tensor), and, with ``fail_left``, never moving (and reporting +10) on the left-goal task."""

    def __init__(self, fail_left=False, as_float=False, **kw):
        super().__init__(**kw)
        self.fail_left, self.as_float = fail_left, as_float

    def act(self, obs, state):
        chunk, new = super().act(obs, state)
        calls = new.tensors["calls"].double()
        left = obs[STATE_KEY][:, -1, 2] < 0
        if self.fail_left:
            chunk[left] = 0.0
            calls = calls + 10.0 * left
        unc = float(calls[0]) if self.as_float else calls
        return chunk, PolicyState(tensors=new.tensors, step=new.step, info={**new.info, "uncertainty": unc})


def test_uncertainty_mean_and_max_per_episode(tmp_path):
    r = evaluate(UncertainPolicy(n_action_steps=4), PointSuite(), episodes=3, n_envs=2, vector="sync",
                 n_videos=0, progress=False, out_dir=tmp_path)
    for e in r["per_episode"]:
        calls = math.ceil(e["length"] / 4)  # sync scheduler: one call per 4-step chunk until success
        assert e["uncertainty_max"] == calls
        assert e["uncertainty_mean"] == pytest.approx((1 + calls) / 2)
    info = json.loads((tmp_path / "eval_info.json").read_text())
    assert info["per_episode"][0]["uncertainty_max"] == r["per_episode"][0]["uncertainty_max"]
    assert r["uncertainty"] == {"episodes": 6, "auroc_mean": None, "auroc_max": None}  # no failures
    # a float is broadcast to every env of the batch
    r = evaluate(UncertainPolicy(as_float=True, n_action_steps=4), PointSuite(), episodes=1, n_envs=1,
                 vector="sync", n_videos=0, progress=False, tasks=["reach-a"])
    assert r["per_episode"][0]["uncertainty_max"] == math.ceil(r["per_episode"][0]["length"] / 4)


def test_uncertainty_auroc_and_absence():
    r = evaluate(UncertainPolicy(fail_left=True), PointSuite(max_steps=20), episodes=3, n_envs=2, vector="sync",
                 n_videos=0, progress=False)
    assert r["tasks"]["reach-a"]["success_rate"] == 1.0 and r["tasks"]["reach-b"]["success_rate"] == 0.0
    assert r["uncertainty"]["auroc_mean"] == 1.0 and r["uncertainty"]["auroc_max"] == 1.0
    plain = evaluate(GoalPolicy(), PointSuite(), episodes=2, n_envs=2, vector="sync", n_videos=0, progress=False)
    assert r["uncertainty"]["episodes"] == 6 and plain["uncertainty"] is None
    assert not any(k.startswith("uncertainty") for e in plain["per_episode"] for k in e)


def test_bad_uncertainty_is_an_error():
    class Wrong(GoalPolicy):
        def act(self, obs, state):
            chunk, new = super().act(obs, state)
            return chunk, PolicyState(tensors=new.tensors, step=new.step, info={"uncertainty": torch.zeros(3)})

    with pytest.raises(ValueError, match=r"uncertainty.*\(2,\)"):
        evaluate(Wrong(), PointSuite(), episodes=2, n_envs=2, vector="sync", n_videos=0, progress=False)


class ComputePolicy(GoalPolicy):
    """GoalPolicy reporting ``compute_steps`` = this episode's call count so far, per env."""

    def act(self, obs, state):
        chunk, new = super().act(obs, state)
        return chunk, PolicyState(tensors=new.tensors, step=new.step,
                                  info={**new.info, "compute_steps": new.tensors["calls"].double()})


def test_compute_steps_are_averaged_over_live_calls():
    r = evaluate(ComputePolicy(n_action_steps=4), PointSuite(), episodes=3, n_envs=2, vector="sync",
                 n_videos=0, progress=False)
    calls = [math.ceil(e["length"] / 4) for e in r["per_episode"]]  # calls while each env was live
    expected = sum(c * (c + 1) / 2 for c in calls) / sum(calls)
    assert r["compute_steps_per_call"] == pytest.approx(expected)
    plain = evaluate(GoalPolicy(), PointSuite(), episodes=1, n_envs=2, vector="sync", n_videos=0, progress=False)
    assert plain["compute_steps_per_call"] is None
