"""Streaming Diffusion Policy: the per-slot-noise buffer math and the policy's streaming state."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from robopolicy.policies.streaming_diffusion import SDPConfig, StreamingDiffusionPolicy
from robopolicy.samplers import BufferLayout, DiffusionSampler, NoiseScheduleConfig, StepCoefficients, StreamingSchedule
from robopolicy.types import FeatureSpec, PolicyState


def _schedule(method="ddim", horizon=16, n_past=1, n_action=1, steps=1, prediction="epsilon"):
    sampler = DiffusionSampler(NoiseScheduleConfig(prediction_type=prediction, sampler=method))
    return StreamingSchedule(sampler, BufferLayout(horizon, n_past, n_action), steps, method)


def test_layout_and_profiles():
    s = _schedule(n_action=1, steps=1)
    assert s.layout.num_chunks == 15 and s.num_levels == 15
    assert s.streaming_profile().tolist() == [1] + list(range(1, 16))  # past slot shares chunk 0's level
    assert s.executed_profile().tolist() == [0] + list(range(0, 15))
    # 15 slots after the past one in chunks of 4: 3 chunks and a 3-slot tail belonging to chunk 2.
    s = _schedule(n_action=4, steps=2)
    assert s.layout.num_chunks == 3 and s.num_levels == 6
    assert s.streaming_profile().tolist() == [2] + [2] * 4 + [4] * 4 + [6] * 7


def test_levels_are_diffusers_trailing_timesteps():
    s = _schedule(n_action=3, steps=2)  # 5 chunks x 2 = 10 levels
    ref = DDIMScheduler(num_train_timesteps=100, timestep_spacing="trailing")
    ref.set_timesteps(10)
    assert s.level_timesteps.tolist() == [-1] + ref.timesteps.flip(0).tolist()
    assert s.level_timesteps[-1] == 99  # fresh noise enters at the noisiest training timestep
    assert s.timesteps(torch.tensor([[0, 1, 10]])).tolist() == [[0, 9, 99]]


@pytest.mark.parametrize("method", ["ddim", "ddpm"])
@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_per_slot_step_equals_scalar_step_at_each_level(method, prediction):
    s = _schedule(method, n_action=5, steps=2, prediction=prediction)  # 3 chunks, 6 levels
    g = torch.Generator().manual_seed(0)
    for k in range(1, s.num_levels + 1):
        x, out, noise = (torch.randn(2, 16, 4, generator=g) for _ in range(3))
        t, t_prev = s.level_timesteps[k], s.level_timesteps[k - 1]
        c = s.sampler.coefficients(t.view(1), t_prev.view(1), method)
        coef = StepCoefficients(0, int(t), *(float(c[n][0]) for n in ("sqrt_alpha", "sqrt_one_minus_alpha", "c_x0", "c_xt", "c_eps", "sigma")))
        expected = s.sampler.step(coef, x, out, noise if coef.sigma else None)
        got, levels = s.step(x, torch.full((2, 16), k), out, noise)
        assert torch.allclose(got, expected, atol=1e-5)
        assert (levels == k - 1).all()


@pytest.mark.parametrize("method", ["ddim", "ddpm"])
def test_clean_slots_do_not_move_under_further_steps(method):
    s = _schedule(method)
    x = torch.randn(2, 16, 4)
    levels = torch.randint(0, 3, (2, 16))
    levels[:, :3] = 0
    got, new_levels = s.step(x, levels, torch.randn(2, 16, 4), torch.randn(2, 16, 4))
    clean = levels == 0
    assert torch.equal(got[clean], x[clean]) and not torch.allclose(got[~clean], x[~clean])
    assert torch.equal(new_levels, (levels - 1).clamp_min(0))


def test_shift_moves_each_slot_with_its_level_and_refills_the_end():
    s = _schedule(n_action=4, steps=2)  # past 1 | chunks [1,5) [5,9) [9,13) | tail [13,16)
    x = torch.arange(16.0).view(1, 16, 1).expand(2, 16, 3).clone()
    levels = s.executed_profile().expand(2, -1).clone()
    fresh = torch.full((2, 16 - 9, 3), -7.0)
    got, new_levels = s.shift(x, levels, fresh)
    assert torch.equal(got[:, :9], x[:, 4:13]) and torch.equal(new_levels[:, :9], levels[:, 4:13])
    assert (got[:, 9:] == -7).all() and (new_levels[:, 9:] == s.num_levels).all()
    with pytest.raises(ValueError, match="fresh noise"):
        s.shift(x, levels, torch.zeros(2, 3, 3))


@pytest.mark.parametrize("method", ["ddim", "ddpm"])
@pytest.mark.parametrize("n_action,steps", [(1, 1), (4, 2), (3, 3)])
def test_oracle_denoiser_streams_a_known_trajectory(method, n_action, steps):
    """With a denoiser that knows the clean trajectory, every call returns it exactly, the levels
    cycle through the profiles, and what stays in the buffer moves one chunk left per call."""
    s = _schedule(method, n_action=n_action, steps=steps)
    torch.manual_seed(0)
    traj = torch.rand(2, 16 + 5 * n_action, 4) * 1.8 - 0.9  # a longer clean trajectory to stream through
    levels = s.streaming_profile().expand(2, -1)
    x = s.renoise(traj[:, :16], levels, torch.randn(2, 16, 4))
    for call in range(5):
        x0 = traj[:, call * n_action : call * n_action + 16]
        for _ in range(steps):
            a = s.sampler.alphas_cumprod[s.timesteps(levels)].float().unsqueeze(-1)
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
            x, levels = s.step(x, levels, eps, torch.randn_like(x))
        assert torch.equal(levels, s.executed_profile().expand(2, -1))
        head = slice(1, 1 + n_action)
        assert torch.allclose(x[:, head], x0[:, head], atol=1e-5)
        before = x.clone()
        x, levels = s.advance(x, levels)
        assert torch.equal(levels, s.streaming_profile().expand(2, -1))
        keep = s.layout.last_chunk_start
        assert torch.equal(x[:, 1:keep], before[:, 1 + n_action : keep + n_action])  # shifted, untouched
        # Fresh noise at the end corresponds to the trajectory's next, not yet seen, actions.
        x[:, keep:] = s.renoise(traj[:, (call + 1) * n_action + keep : (call + 1) * n_action + 16], levels[:, keep:], x[:, keep:])


def test_advance_refuses_an_undenoised_head():
    s = _schedule()
    with pytest.raises(ValueError, match="level 0"):
        s.advance(torch.zeros(1, 16, 2), s.streaming_profile().view(1, -1))


def test_training_timesteps_mix_chunkwise_and_constant():
    s = _schedule(n_action=3)  # 5 chunks over 15 slots, T = 100
    torch.manual_seed(0)
    chunk = s.training_timesteps(4000, constant_prob=0.0)
    assert (chunk.diff(dim=1) >= 0).all() and chunk.min() >= 0 and chunk.max() <= 99
    c = s.chunk_of_slot
    assert ((chunk >= c * 20 - 1) & (chunk <= (c + 1) * 20 - 1)).all()  # chunk c within its band
    assert chunk[:, -1].max() == 99 and chunk[:, 1].min() == 0
    const = s.training_timesteps(100, constant_prob=1.0)
    assert (const == const[:, :1]).all() and const.unique().numel() > 20
    mixed = s.training_timesteps(4000, constant_prob=0.2)
    frac = (mixed == mixed[:, :1]).all(dim=1).float().mean().item()
    assert 0.17 < frac < 0.23


def test_config_rejects_too_many_levels():
    with pytest.raises(ValueError, match="noise levels"):
        SDPConfig(horizon=16, n_obs_steps=2, n_action_steps=1, steps_per_act=7)  # 15 x 7 > 100
    with pytest.raises(ValueError, match="constant_noise_prob"):
        SDPConfig(constant_noise_prob=1.5)


# --- the policy ----------------------------------------------------------------------------------
def _policy(**overrides):
    feats = FeatureSpec(action_dim=2, state_dim=3)
    lo, hi = np.full(2, -1.0, np.float32), np.full(2, 1.0, np.float32)
    st = {"min": -np.ones(3, np.float32), "max": np.ones(3, np.float32), "mean": np.zeros(3, np.float32), "std": np.ones(3, np.float32)}
    stats = {"action": {"min": lo, "max": hi, "mean": lo * 0, "std": hi}, "observation.state": st}
    cfg = SDPConfig.tiny()
    for k, v in overrides.items():
        setattr(cfg, k, v)
    cfg.__post_init__()
    torch.manual_seed(0)
    return StreamingDiffusionPolicy(cfg, feats, stats).eval()


@pytest.mark.parametrize("method", ["ddim", "ddpm"])
def test_policy_streams_its_buffer_in_state(method):
    policy = _policy()
    policy.config.noise.sampler = method
    policy.stream = StreamingSchedule(policy.sampler, policy.config.layout(), 1, method)
    obs = {"observation.state": torch.rand(2, 2, 3)}
    a, state = policy.act(obs, policy.init_state(2))
    k = policy.stream.num_levels  # tiny: horizon 8, 1 past slot, 7 chunks of 1
    assert k == 7 and state.info["denoiser_evals"] == k and a.shape == (2, 1, 2)
    assert torch.equal(state.tensors["levels"], policy.stream.streaming_profile().expand(2, -1))
    prev = state.tensors["buffer"]
    a2, state2 = policy.act(obs, state)
    assert state2.info["denoiser_evals"] == 1 and state2.step == 2 and torch.isfinite(a2).all()
    assert torch.equal(state2.tensors["levels"], state.tensors["levels"])
    assert not torch.equal(state2.tensors["buffer"], prev)
    # The returned action is the head slot of the buffer after one more denoising step.
    with torch.inference_mode():
        film = policy.unet.combine_film(policy.unet.film_timestep(policy.stream.timesteps(state.tensors["levels"])),
                                        policy.unet.film_global(policy.global_cond(obs)))
        out = policy.unet(prev, film=film)
    if method == "ddim":  # deterministic: the step can be replayed exactly
        x, levels = policy.stream.step(prev, state.tensors["levels"], out)
        assert levels[:, 1].eq(0).all()
        assert torch.allclose(a2, policy.tokenizer.decode(x[:, 1:2]), atol=1e-6)
        assert torch.allclose(state2.tensors["buffer"][:, 1:-1], x[:, 2:], atol=1e-6)


def test_policy_rejects_a_foreign_state():
    policy = _policy()
    obs = {"observation.state": torch.rand(2, 2, 3)}
    _, state = policy.act(obs, policy.init_state(2))
    with pytest.raises(ValueError, match="init_state"):
        policy.act({"observation.state": torch.rand(3, 2, 3)}, state)
    with pytest.raises(ValueError, match="levels"):
        policy.act(obs, PolicyState(tensors={"buffer": state.tensors["buffer"]}))
    bad = PolicyState(tensors={"buffer": state.tensors["buffer"], "levels": state.tensors["levels"] * 0})
    with pytest.raises(ValueError, match="streaming profile"):
        policy.act(obs, bad)


def test_chunks_of_several_actions():
    policy = _policy(n_action_steps=3, steps_per_act=2)  # horizon 8: past 1, chunks [1,4) [4,7), tail 7
    obs = {"observation.state": torch.rand(1, 2, 3)}
    a, state = policy.act(obs, policy.init_state(1))
    assert a.shape == (1, 3, 2) and state.info["denoiser_evals"] == 4
    a, state = policy.act(obs, state)
    assert a.shape == (1, 3, 2) and state.info["denoiser_evals"] == 2
