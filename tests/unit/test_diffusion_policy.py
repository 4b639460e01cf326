import dataclasses

import numpy as np
import pytest
import torch

from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robopolicy.types import FeatureSpec

SPEC = FeatureSpec(action_dim=2, state_dim=3)
STATS = {
    "observation.state": {"min": np.zeros(3), "max": np.ones(3)},
    "action": {"min": np.full(2, -2.0), "max": np.full(2, 2.0)},
}


def _policy():
    torch.manual_seed(0)
    return DiffusionPolicy(DiffusionConfig.tiny(), SPEC, STATS)


def test_loss_is_the_mean_over_non_padded_actions(monkeypatch):
    policy = _policy()
    # A denoiser that always predicts zero noise: the loss is then the mean of noise**2 over the
    # valid actions, with the noise drawn first from the seeded RNG.
    monkeypatch.setattr(policy.unet, "forward", lambda x, t, cond: torch.zeros_like(x))
    batch = {"observation.state": torch.rand(4, 2, 3), "action": torch.rand(4, 8, 2)}
    batch["action_is_pad"] = torch.zeros(4, 8, dtype=torch.bool)
    batch["action_is_pad"][:2, 5:] = True
    torch.manual_seed(1)
    loss, info = policy.loss(batch)
    torch.manual_seed(1)
    noise = torch.randn(4, 8, 2)
    valid = ~batch["action_is_pad"]
    assert torch.allclose(loss, noise[valid].pow(2).mean())
    assert info["loss"] == pytest.approx(loss.item())
    torch.manual_seed(1)
    unmasked, _ = policy.loss({k: v for k, v in batch.items() if k != "action_is_pad"})
    assert torch.allclose(unmasked, noise.pow(2).mean())


def test_loss_under_bf16_autocast_is_float32_and_close():
    # The trainer's precision=bf16 runs policy.loss under autocast.
    policy = _policy()
    batch = {"observation.state": torch.rand(8, 2, 3), "action": torch.rand(8, 8, 2)}
    torch.manual_seed(2)
    ref, _ = policy.loss(batch)
    torch.manual_seed(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = policy.loss(batch)
    assert low.dtype == torch.float32 and torch.isfinite(low)
    assert abs(low.item() - ref.item()) < 0.15 * ref.item()
    low.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in policy.parameters())


def test_bad_inputs_are_named():
    policy = _policy()
    with pytest.raises(ValueError, match=r"'action' must have shape \(B, 8, 2\)"):
        policy.loss({"observation.state": torch.rand(2, 2, 3), "action": torch.rand(2, 16, 2)})
    with pytest.raises(ValueError, match="missing 'action'"):
        policy.loss({"observation.state": torch.rand(2, 2, 3)})
    with pytest.raises(ValueError, match="exceeds horizon"):
        DiffusionConfig(horizon=8, n_obs_steps=2, n_action_steps=8)
    with pytest.raises(ValueError, match="continuous"):
        DiffusionConfig(action_tokenizer=dataclasses.replace(DiffusionConfig().action_tokenizer, kind="discrete"))
    with pytest.raises(ValueError, match="compile_mode must be"):
        DiffusionConfig(compile_mode="cudagraphs")


@pytest.mark.slow
def test_compiled_unet_samples_like_eager_and_stays_out_of_the_state_dict():
    policy = _policy().eval()
    keys = set(policy.state_dict())
    obs = {"observation.state": torch.rand(2, 2, 3)}
    torch.manual_seed(0)
    eager = policy.sample_chunk(obs)
    policy.config.compile_unet = True
    torch.manual_seed(0)
    compiled = policy.sample_chunk(obs)
    assert torch.allclose(compiled, eager, atol=1e-4)
    assert set(policy.state_dict()) == keys
    # A weight change (a training step, an EMA swap) must reach the compiled path too.
    with torch.no_grad():
        for p in policy.unet.parameters():
            p.mul_(1.5)
    policy.config.compile_unet = False
    torch.manual_seed(0)
    eager_changed = policy.sample_chunk(obs)
    policy.config.compile_unet = True
    torch.manual_seed(0)
    compiled_changed = policy.sample_chunk(obs)
    assert not torch.allclose(eager_changed, eager, atol=1e-3)
    assert torch.allclose(compiled_changed, eager_changed, atol=1e-4)
