import pytest
import torch

from robopolicy.samplers import DiffusionSampler, NoiseScheduleConfig


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
@pytest.mark.parametrize("kind,steps", [("ddim", 10), ("ddpm", 100), ("ddpm", 10)])
def test_fast_step_equals_diffusers_step(prediction, kind, steps):
    s = DiffusionSampler(NoiseScheduleConfig(prediction_type=prediction))
    ref = type(s.schedulers[kind]).from_config(s.schedulers[kind].config)
    ref.set_timesteps(steps)
    plan = s.plan(kind, steps)
    assert [p.t for p in plan] == ref.timesteps.tolist()
    g = torch.Generator().manual_seed(0)
    x = 2 * torch.randn(2, 16, 4, generator=g)
    for p in plan:
        out = torch.randn(2, 16, 4, generator=g)
        torch.manual_seed(p.t)
        expected = ref.step(out, p.t, x).prev_sample
        torch.manual_seed(p.t)  # diffusers draws its DDPM noise from the global RNG
        noise = torch.randn(2, 16, 4) if p.sigma else None
        assert torch.allclose(s.step(p, x, out, noise), expected, atol=2e-5)
        x = expected


def test_add_noise_per_slot_matches_per_sample_and_diffusers():
    s = DiffusionSampler(NoiseScheduleConfig())
    x0, noise = torch.randn(3, 8, 2), torch.randn(3, 8, 2)
    t = torch.tensor([0, 37, 99])
    per_sample = s.add_noise(x0, noise, t)
    assert torch.allclose(per_sample, s.schedulers["ddpm"].add_noise(x0, noise, t), atol=1e-6)
    assert torch.allclose(s.add_noise(x0, noise, t[:, None].expand(3, 8)), per_sample, atol=1e-6)
    slots = torch.randint(0, 100, (3, 8))
    mixed = s.add_noise(x0, noise, slots)
    a = s.alphas_cumprod[slots].float().unsqueeze(-1)
    assert torch.allclose(mixed, a.sqrt() * x0 + (1 - a).sqrt() * noise, atol=1e-6)


@pytest.mark.parametrize("kind,steps", [("ddim", 10), ("ddpm", 100)])
def test_sampling_with_an_oracle_denoiser_recovers_the_target(kind, steps):
    s = DiffusionSampler(NoiseScheduleConfig())
    target = torch.rand(2, 16, 3) * 1.6 - 0.8

    def oracle(x, step):  # the exact noise that separates x from the target at this level
        return (x - step.sqrt_alpha * target) / step.sqrt_one_minus_alpha

    out = s.sample(oracle, target.shape, sampler=kind, num_steps=steps, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target, atol=1e-4)


def test_sampling_is_seeded_and_config_is_validated():
    s = DiffusionSampler(NoiseScheduleConfig(sampler="ddpm", num_inference_steps=20))

    def model(x, step):
        return 0.5 * x

    a = s.sample(model, (1, 8, 2), generator=torch.Generator().manual_seed(3))
    b = s.sample(model, (1, 8, 2), generator=torch.Generator().manual_seed(3))
    c = s.sample(model, (1, 8, 2), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(s.plan()) == 20
    with pytest.raises(ValueError, match="num_inference_steps"):
        s.plan("ddim", 1000)
    with pytest.raises(ValueError, match="sampler"):
        DiffusionSampler(NoiseScheduleConfig(sampler="euler"))
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusionSampler(NoiseScheduleConfig(prediction_type="v_prediction"))
