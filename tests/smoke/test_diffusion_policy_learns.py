"""Diffusion Policy learns: a tiny model trained for a few seconds on two observation -> chunk
pairs reproduces each chunk from its observation (conditioning works end to end)."""

import numpy as np
import torch

from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robopolicy.types import FeatureSpec

SPEC = FeatureSpec(action_dim=2, state_dim=3)
STATS = {
    "observation.state": {"min": np.zeros(3), "max": np.ones(3)},
    "action": {"min": np.full(2, -2.0), "max": np.full(2, 2.0)},
}


def test_learns_observation_conditioned_chunks_and_act_slices_from_current_frame():
    torch.manual_seed(0)
    policy = DiffusionPolicy(DiffusionConfig.tiny(), SPEC, STATS)
    cfg = policy.config
    obs_a, obs_b = torch.zeros(1, 2, 3), torch.ones(1, 2, 3)
    steps = torch.linspace(-1, 1, cfg.horizon)
    chunk_a = torch.stack((steps, -steps), -1)[None] * 1.5
    chunk_b = torch.stack((-steps, 0.5 * torch.ones_like(steps)), -1)[None]
    which = torch.arange(32) % 2 == 0
    batch = {
        "observation.state": torch.where(which[:, None, None], obs_a, obs_b),
        "action": torch.where(which[:, None, None], chunk_a, chunk_b),
    }
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    for _ in range(500):
        loss, _ = policy.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    torch.manual_seed(0)
    both = torch.cat((obs_a, obs_b))
    chunk = policy.sample_chunk({"observation.state": both})
    target = torch.cat((chunk_a, chunk_b))
    assert (chunk - target).abs().mean() < 0.15, (chunk - target).abs().mean()
    swapped = target.flip(0)  # each chunk is far from the other observation's target
    assert (chunk - swapped).abs().mean() > 0.8
    torch.manual_seed(0)
    acts, _ = policy.act({"observation.state": both}, policy.init_state(2))
    start = cfg.n_obs_steps - 1
    assert torch.equal(acts, chunk[:, start : start + cfg.n_action_steps])
    ddpm = policy.sample_chunk({"observation.state": both}, sampler="ddpm", num_steps=20)
    assert (ddpm - target).abs().mean() < 0.2
