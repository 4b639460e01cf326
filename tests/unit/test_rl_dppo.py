"""DPPO for Diffusion Policy: the recorded chain's log-probabilities are what the update recomputes
(PPO ratio 1 before any step), and one refinement iteration updates the policy into a new run."""

import numpy as np
import pytest
import torch
from rl_fakes import make_checkpoints, tree_hash

from robopolicy.rl.config import DPPOConfig, RefineConfig
from robopolicy.rl.dppo import _chain_mean, _gaussian_logp, sample_chain
from robopolicy.rl.refine import run_refine
from robopolicy.types import STATE_KEY


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return make_checkpoints(tmp_path_factory.mktemp("rl_dppo"))


def test_chain_log_probs_match_their_recomputation(paths):
    from robopolicy.train.checkpoint import load_policy

    policy = load_policy(paths["policy"])
    c = policy.config
    obs = {STATE_KEY: torch.randn(3, c.n_obs_steps, policy.features.state_dim)}
    torch.manual_seed(0)
    chunk, chain, logp, steps = sample_chain(policy, obs, k_steps=2, min_std=0.1)
    assert chunk.shape == (3, c.n_action_steps, policy.features.action_dim)
    assert chain.shape == (3, 3, c.horizon, policy.features.action_dim) and logp.shape == (3, 2)
    plan = policy.sampler.plan()
    assert steps == [len(plan) - 2, len(plan) - 1]
    cond = policy.global_cond(obs)
    for j, idx in enumerate(steps):
        s = plan[idx]
        t = torch.full((3,), s.t, dtype=torch.long)
        mean = _chain_mean(policy, s, chain[:, j], policy.unet(chain[:, j], t, cond))
        again = _gaussian_logp(chain[:, j + 1], mean, max(s.sigma, 0.1))
        assert torch.allclose(again, logp[:, j], atol=1e-4)
    # the last latent is the executed chunk (decoded, from the oldest observed frame on)
    start = c.n_obs_steps - 1
    assert torch.allclose(policy.tokenizer.decode(chain[:, -1])[:, start:start + c.n_action_steps], chunk)


def test_dppo_iteration_updates_the_policy_in_a_new_run(paths):
    before = tree_hash(paths["policy"])
    cfg = RefineConfig(checkpoint=str(paths["policy"]), world_model=str(paths["wm"]), method="dppo", iterations=1,
                       states_per_iter=2, rollouts_per_state=2, n_envs=4, max_episode_steps=10, batch_size=8,
                       lr=1e-3, eval_episodes=2, eval_n_envs=2, device="cpu", run_name="dppo",
                       dppo=DPPOConfig(k_steps=2, epochs=1, minibatch=16))
    scores = iter([0.0, 0.5])
    log = run_refine(cfg, progress=False, evaluate_fn=lambda p, s, c: {"success_rate": next(scores)})
    row = log["iterations"][1]
    assert row["samples"] > 0 and row["updates"] >= 1 and np.isfinite(row["pg_loss"])
    assert row["clip_fraction"] == 0.0 or row["updates"] > 1  # the first minibatch starts at ratio 1
    assert log["best_iteration"] == 1 and tree_hash(paths["policy"]) == before
    from pathlib import Path

    from robopolicy.train.checkpoint import load_policy

    old, new = load_policy(paths["policy"]).state_dict(), load_policy(Path(log["run_dir"])).state_dict()
    assert any(not torch.equal(old[k], new[k]) for k in old)
    with pytest.raises(ValueError, match="refine.dppo: invalid"):
        DPPOConfig(k_steps=0)
