"""The contract every registered policy family honours, checked with a tiny config on synthetic
data: finite loss with a gradient on every trainable parameter, `act` shapes, determinism under a
seed, identical actions after a safetensors save -> load into a policy built without stats, and
`init_state` resetting whatever the policy carries between calls.

A family's config class should offer ``tiny()`` (a seconds-fast configuration); otherwise its
defaults are used."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from robopolicy import registry
from robopolicy.types import FeatureSpec, PolicyState

B = 3
STATE_DIM, ACTION_DIM, IMAGE = 6, 3, (3, 64, 64)

FEATURES = {
    "state": FeatureSpec(action_dim=ACTION_DIM, state_dim=STATE_DIM),
    "state+image": FeatureSpec(action_dim=ACTION_DIM, state_dim=STATE_DIM, cameras={"front": IMAGE}),
    "state+language": FeatureSpec(action_dim=ACTION_DIM, state_dim=STATE_DIM, use_language=True),
}


def _stats(features: FeatureSpec) -> dict:
    def entry(shape, lo, hi):
        lo, hi = np.full(shape, lo, np.float32), np.full(shape, hi, np.float32)
        return {"min": lo, "max": hi, "mean": (lo + hi) / 2, "std": (hi - lo) / 4, "q01": lo * 0.9, "q99": hi * 0.9}

    stats = {"action": entry((features.action_dim,), -2.0, 2.0), "observation.state": entry((features.state_dim,), -1.0, 3.0)}
    for key in features.image_keys:
        stats[key] = entry((3, 1, 1), 0.0, 1.0)
    return stats


def _config(name: str):
    cls = registry.get("policy", name).config_class
    return cls.tiny() if hasattr(cls, "tiny") else cls()


def _obs(features: FeatureSpec, n_obs: int, gen: torch.Generator) -> dict:
    obs = {"observation.state": torch.rand(B, n_obs, STATE_DIM, generator=gen) * 4 - 1}
    for key in features.image_keys:
        obs[key] = torch.rand(B, n_obs, *IMAGE, generator=gen)
    if features.use_language:
        obs["task"] = ["push the block", "open the drawer", "push the block"]
    return obs


def _batch(features: FeatureSpec, config, gen: torch.Generator, delta_timestamps: dict | None = None) -> dict:
    """A training batch; a camera gets as many frames as ``delta_timestamps`` (the policy's) asks the
    dataset for: a policy that predicts future frames asks for more than the observed ones."""
    batch = _obs(features, config.n_obs_steps, gen)
    for key in features.image_keys:
        n = len((delta_timestamps or {}).get(key, ())) or config.n_obs_steps
        if n != config.n_obs_steps:
            batch[key] = torch.rand(B, n, *IMAGE, generator=gen)
    batch["action"] = torch.rand(B, config.horizon, ACTION_DIM, generator=gen) * 4 - 2
    pad = torch.zeros(B, config.horizon, dtype=torch.bool)
    pad[0, -2:] = True
    batch["action_is_pad"] = pad
    return batch


@pytest.fixture(params=registry.names("policy"))
def name(request):
    return request.param


@pytest.fixture(params=list(FEATURES))
def features(request):
    return FEATURES[request.param]


def _build(name, features, stats="fit"):
    torch.manual_seed(0)
    cls = registry.get("policy", name)
    return cls(_config(name), features, _stats(features) if stats == "fit" else None)


def test_loss_is_finite_and_reaches_every_parameter(name, features):
    policy = _build(name, features).train()
    batch = _batch(features, policy.config, torch.Generator().manual_seed(1), policy.delta_timestamps())
    loss, info = policy.loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert info and all(isinstance(v, float) for v in info.values())
    loss.backward()
    missing = [n for n, p in policy.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing, f"no gradient reaches {missing}"
    assert all(torch.isfinite(p.grad).all() for p in policy.parameters() if p.grad is not None)


def test_act_shapes_and_seed_determinism(name, features):
    policy = _build(name, features).eval()
    obs = _obs(features, policy.config.n_obs_steps, torch.Generator().manual_seed(2))
    torch.manual_seed(7)
    a, state = policy.act(obs, policy.init_state(B))
    assert isinstance(state, PolicyState)
    assert a.shape == (B, policy.config.n_action_steps, ACTION_DIM) and torch.isfinite(a).all()
    torch.manual_seed(7)
    b, _ = policy.act(obs, policy.init_state(B))
    assert torch.equal(a, b)


def test_save_load_restores_identical_actions(name, features, tmp_path):
    policy = _build(name, features).eval()
    obs = _obs(features, policy.config.n_obs_steps, torch.Generator().manual_seed(3))
    torch.manual_seed(11)
    expected, _ = policy.act(obs, policy.init_state(B))

    path = tmp_path / "policy.safetensors"
    save_file(policy.state_dict(), str(path))
    torch.manual_seed(123)  # different random init
    fresh = registry.get("policy", name)(_config(name), features, None).eval()
    with pytest.raises(ValueError):  # fitted statistics are buffers: unusable until loaded
        fresh.act(obs, fresh.init_state(B))
    fresh.load_state_dict(load_file(str(path)))
    torch.manual_seed(11)
    got, _ = fresh.act(obs, fresh.init_state(B))
    assert torch.equal(got, expected)


def test_init_state_resets_what_act_carries(name, features):
    policy = _build(name, features).eval()
    obs = _obs(features, policy.config.n_obs_steps, torch.Generator().manual_seed(4))
    torch.manual_seed(5)
    first, state = policy.act(obs, policy.init_state(B))
    for _ in range(2):
        _, state = policy.act(obs, state)
    assert state.step == 3
    torch.manual_seed(5)
    again, fresh_state = policy.act(obs, policy.init_state(B))
    assert torch.equal(again, first) and fresh_state.step == 1


def test_delta_timestamps_cover_every_input(name, features):
    policy = _build(name, features)
    dt = policy.delta_timestamps()
    c = policy.config
    assert len(dt["action"]) == c.horizon and len(dt["observation.state"]) == c.n_obs_steps
    # cameras: the observed frames first (a policy predicting future frames asks for those after them)
    assert all(dt[k][: c.n_obs_steps] == dt["observation.state"] for k in features.image_keys)
    assert dt["observation.state"][-1] == 0.0
