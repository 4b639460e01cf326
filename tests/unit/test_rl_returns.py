"""Returns, advantages and the generic methods' weights favour the imagined episodes that succeed
(and succeed sooner)."""

import numpy as np
import pytest

from robopolicy.rl.returns import advantages, awr_weights, filter_weights, returns_to_go, step_rewards


def _episodes():
    # 4 episodes of up to 5 steps from 2 initial states: state 0 -> success at step 2 / failure,
    # state 1 -> success at step 4 / success at step 2
    length = np.array([2, 5, 4, 2])
    success = np.array([True, False, True, True])
    return np.zeros((4, 5)), length, success, np.array([0, 0, 1, 1])


def test_success_reward_and_discounted_returns():
    rewards, length, success, _ = _episodes()
    r = step_rewards(rewards, length, success, reward_weight=0.0, success_bonus=1.0)
    assert r.sum(1).tolist() == [1.0, 0.0, 1.0, 1.0] and r[0, 1] == 1.0 and r[2, 3] == 1.0
    G = returns_to_go(r, 0.5)
    assert G[0].tolist()[:2] == [0.5, 1.0] and G[2, 0] == 0.125 and G[1].max() == 0.0
    dense = step_rewards(np.ones((4, 5)), length, success, reward_weight=2.0, success_bonus=0.0)
    assert dense.sum(1).tolist() == [4.0, 10.0, 8.0, 4.0]  # only counted steps (t < length)


def test_awr_weights_favour_high_return_episodes():
    rewards, length, success, groups = _episodes()
    valid = np.arange(5)[None] < length[:, None]
    G = returns_to_go(step_rewards(rewards, length, success), 0.9)
    A = advantages(G, valid, groups)
    w = awr_weights(A, valid, beta=1.0, max_weight=20.0)
    assert (w[~valid] == 0).all() and (w[valid] > 0).all()
    # same start state: the success outweighs the failure; the quicker success outweighs the slower one
    assert w[0, 0] > w[1, 0] and w[3, 0] > w[2, 0]
    assert w[0, :2].mean() > w[1, :5].mean()
    # a lower temperature sharpens the preference; the clip bounds it
    sharp = awr_weights(A, valid, beta=0.1, max_weight=5.0)
    assert sharp[0, 0] / sharp[1, 0] > w[0, 0] / w[1, 0] and sharp.max() <= 5.0
    with pytest.raises(ValueError):
        awr_weights(A, valid, beta=0.0)


def test_advantage_baseline_is_per_initial_state_then_the_batch():
    G = np.array([[1.0, 1.0], [0.0, 0.0], [5.0, 5.0]])
    valid = np.ones((3, 2), bool)
    A = advantages(G, valid, np.array([0, 0, 1]), normalize=False)
    assert A[0].tolist() == [0.5, 0.5] and A[1].tolist() == [-0.5, -0.5]
    assert A[2].tolist() == [3.0, 3.0]  # alone from its state: compared with the batch mean (2)


def test_filtered_weights_keep_the_best_successes():
    rewards, length, success, _ = _episodes()
    valid = np.arange(5)[None] < length[:, None]
    ret = returns_to_go(step_rewards(rewards, length, success), 0.9)[:, 0]
    w = filter_weights(ret, success, valid)
    assert w.sum(1).tolist() == [2.0, 0.0, 4.0, 2.0]
    top = filter_weights(ret, success, valid, top_fraction=0.3)  # 1 of the 3 successes: a quick one
    assert top.sum(1).tolist() == [2.0, 0.0, 0.0, 0.0]
    assert filter_weights(ret, np.zeros(4, bool), valid).sum() == 0
