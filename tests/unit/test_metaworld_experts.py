"""Our Meta-World experts (envs/metaworld_experts.py): each solves its task from eval initial
states where Meta-World's shipped policy fails, and MetaWorldExpert picks ours for those tasks."""

from __future__ import annotations

import numpy as np
import pytest
from metaworld.policies import ENV_POLICY_MAP

from envs import STATE_KEY, make_suite
from envs.metaworld_experts import EXPERTS, BoxCloseExpert
from envs.metaworld_suite import MetaWorldExpert

# Eval trials where Meta-World's own policy fails (measured): toppled lids, a cube right under
# the hand, a ball under the hand / far from the goal's axis, a peg dragged off.
HARD_TRIALS = {
    "box-close-v3": [6, 29, 46],
    "sweep-into-v3": [0, 4, 10],
    "soccer-v3": [5, 10, 13],
    "peg-insert-side-v3": [24, 31, 33],
}


def _rollout(suite, env, expert, task: str, trial: int) -> tuple[bool, list[str]]:
    obs, _ = env.reset(seed=suite.trial_seed(task, trial, "eval"))
    expert.reset()
    for _ in range(suite.max_episode_steps(task)):
        action = expert.act(obs)
        assert action.shape == (4,) and action.dtype == np.float32
        assert np.all(np.abs(action) <= 1.0)
        obs, _, _, _, info = env.step(action)
        if info["success"]:
            return True, []
    return False, [f"{task} trial {trial}: no success in {suite.max_episode_steps(task)} steps"]


@pytest.mark.parametrize("task", sorted(HARD_TRIALS))
def test_expert_solves_hard_eval_trials(task):
    suite = make_suite(f"metaworld/mt1/{task}")
    env = suite.make_env(task)
    expert = suite.make_expert(task)
    try:
        failures = []
        for trial in HARD_TRIALS[task]:
            ok, why = _rollout(suite, env, expert, task, trial)
            failures += why
    finally:
        env.close()
    assert not failures, failures


def test_metaworld_expert_routes_to_ours():
    assert set(EXPERTS) == set(HARD_TRIALS)
    assert isinstance(MetaWorldExpert("box-close-v3")._ours, BoxCloseExpert)
    other = MetaWorldExpert("push-v3")
    assert other._ours is None and isinstance(other._policy, ENV_POLICY_MAP["push-v3"])


def test_expert_reset_restarts_the_phases():
    expert = BoxCloseExpert()
    state = np.zeros(39, dtype=np.float32)
    state[4:7] = [0.0, 0.55, 0.016]          # lid far from the hand, still
    state[22:25] = state[4:7]
    state[7:11] = [0.707, 0.0, 0.0, 0.707]   # flat
    for _ in range(10):
        expert.act({STATE_KEY: state})
    assert expert.phase == "above"
    expert.reset()
    assert expert.phase == "settle" and expert.steps_in_phase == 0


def test_expert_rejects_bad_observations():
    expert = EXPERTS["soccer-v3"]()
    with pytest.raises(ValueError, match="39-d"):
        expert.act({STATE_KEY: np.zeros(10)})
    with pytest.raises(ValueError, match="observation.state"):
        expert.act({"observation.images.corner": np.zeros((8, 8, 3))})
