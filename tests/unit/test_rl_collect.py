"""The imagined-rollout collector (the evaluator's loop in a world model's vector env, recorded) and
the imagined transitions built from it in the dataset's batch format."""

import numpy as np
import pytest
import torch
from rl_fakes import make_checkpoints

from robopolicy.rl.collect import CappedSuite, collect_imagined
from robopolicy.rl.transitions import ImaginedTransitions
from robopolicy.types import ACTION_KEY, ACTION_PAD_KEY, STATE_KEY


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: a second torch thread only adds contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from robopolicy.train.checkpoint import load_policy
    from robopolicy.world_model.env import world_model_suite

    paths = make_checkpoints(tmp_path_factory.mktemp("rl_collect"))
    policy = load_policy(paths["policy"])
    suite = CappedSuite(world_model_suite(str(paths["wm"]), "pushblock", policy), max_steps=12)
    return policy, suite


def test_collector_returns_consistent_shapes(setup):
    policy, suite = setup
    seeds = [suite.trial_seed("pushblock", t, "train") for t in range(3)]
    starts = [("pushblock", s) for s in seeds for _ in range(2)]  # 2 episodes per initial state
    r = collect_imagined(policy, suite, starts, n_envs=4, seed=1)
    E, T = r.num_episodes, r.horizon
    S, A = policy.features.state_dim, policy.features.action_dim
    assert E == 6 and 1 <= T <= 12
    assert r.obs[STATE_KEY].shape == (E, T + 1, S) and r.actions.shape == (E, T, A)
    for arr in (r.rewards, r.success_prob, r.step_success):
        assert arr.shape == (E, T)
    assert r.length.shape == r.success.shape == r.end.shape == (E,)
    assert ((1 <= r.length) & (r.length <= T) & (r.end >= r.length) & (r.end <= T)).all()
    assert r.groups.tolist() == [0, 0, 1, 1, 2, 2] and r.seeds.tolist() == [s for s in seeds for _ in range(2)]
    # an episode's success is its first imagined success step, within its counted steps
    for e in range(E):
        hits = np.flatnonzero(r.step_success[e])
        assert r.success[e] == (hits.size > 0 and hits[0] < r.length[e])
        if r.success[e]:
            assert r.length[e] == hits[0] + 1
    # the first observation is the real simulator's state at that seed
    real, _ = suite.real_reset("pushblock", seeds)
    assert np.allclose(r.obs[STATE_KEY][::2, 0], real[STATE_KEY])
    assert np.isfinite(r.actions).all() and r.valid.sum() == r.length.sum()


def test_imagined_batches_match_the_dataset_format_and_train(setup):
    policy, suite = setup
    r = collect_imagined(policy, suite, [("pushblock", suite.trial_seed("pushblock", 0, "train"))] * 2, n_envs=2)
    trans = ImaginedTransitions(r, policy.delta_timestamps(), policy.features.fps)
    assert len(trans) == r.valid.sum()
    c = policy.config
    b = trans.batch(np.arange(len(trans)))
    n = len(trans)
    assert b[STATE_KEY].shape == (n, c.n_obs_steps, policy.features.state_dim)
    assert b[ACTION_KEY].shape == (n, c.horizon, policy.features.action_dim) and b[ACTION_PAD_KEY].shape == (n, c.horizon)
    # sample at step 0: the history repeats the first frame (flagged), the chunk starts n_obs_steps-1 before it
    first = int(np.flatnonzero((trans.episode == 0) & (trans.step == 0))[0])
    assert torch.equal(b[STATE_KEY][first, 0], b[STATE_KEY][first, -1])
    assert b[STATE_KEY + "_is_pad"][first].tolist() == [True] + [False] * (c.n_obs_steps - 1)
    assert torch.allclose(b[ACTION_KEY][first, c.n_obs_steps - 1], torch.from_numpy(r.actions[0, 0]))
    loss, _ = policy.loss(b)
    assert torch.isfinite(loss)
    # weights: zero-weight steps are never samples, sampling follows the weights
    w = np.zeros_like(r.rewards, dtype=np.float64)
    w[0, 0] = 1.0
    only = ImaginedTransitions(r, policy.delta_timestamps(), policy.features.fps, w)
    assert len(only) == 1 and set(only.sample(20).tolist()) == {0}
