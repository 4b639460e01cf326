"""DDPM / DDIM training noise and sampling, with the schedule taken from diffusers.

diffusers' ``DDPMScheduler`` / ``DDIMScheduler`` define the noise schedule (``alphas_cumprod``),
the inference timesteps and each step's predecessor. Their ``step()`` is correct but costs tens of
microseconds of Python per call; we turn each (timestep, previous timestep) pair into six scalar
coefficients once per (sampler, number of steps) and run the loop on those. Every update of both
samplers is then

    x0  = clip((x - sqrt(1 - a_t) * eps) / sqrt(a_t))       (eps-prediction; x0 given directly otherwise)
    x'  = c_x0 * x0 + c_xt * x + c_eps * eps + sigma * z    (z ~ N(0, I))

which equals diffusers' ``step()`` (checked in tests/unit/test_samplers.py). ``coefficients``
works on tensors of timesteps of any shape, so streaming diffusion can step a buffer whose action
slots sit at different noise levels with the same math.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler

SAMPLERS = ("ddpm", "ddim")
PREDICTIONS = ("epsilon", "sample")


@dataclass
class NoiseScheduleConfig:
    """The diffusion noise schedule and how actions are sampled at inference."""

    num_train_timesteps: int = 100
    """Noise levels used in training (diffusers ``num_train_timesteps``)."""
    beta_schedule: str = "squaredcos_cap_v2"
    """diffusers beta schedule name (squaredcos_cap_v2 | linear | scaled_linear)."""
    beta_start: float = 1e-4
    """First beta (linear schedules only)."""
    beta_end: float = 0.02
    """Last beta (linear schedules only)."""
    prediction_type: str = "epsilon"
    """What the denoiser predicts: epsilon (the noise) | sample (the clean chunk)."""
    clip_sample: bool = True
    """Clip the predicted clean chunk to +-clip_sample_range at each step."""
    clip_sample_range: float = 1.0
    """Clip bound (normalized actions live in [-1, 1])."""
    sampler: str = "ddim"
    """Inference sampler: ddim (deterministic, eta=0) | ddpm (stochastic)."""
    num_inference_steps: int | None = 10
    """Denoising steps at inference; None = num_train_timesteps."""


@dataclass(frozen=True)
class StepCoefficients:
    """One denoising step as scalars (see the module docstring for the update)."""

    index: int
    """Position in the plan (0 = noisiest)."""
    t: int
    """diffusers timestep being denoised."""
    sqrt_alpha: float
    """sqrt(alphas_cumprod[t])."""
    sqrt_one_minus_alpha: float
    """sqrt(1 - alphas_cumprod[t])."""
    c_x0: float
    """Weight of the predicted clean sample."""
    c_xt: float
    """Weight of the current noisy sample (DDPM posterior mean)."""
    c_eps: float
    """Weight of the predicted noise (DDIM direction)."""
    sigma: float
    """Standard deviation of the fresh noise added (DDPM, 0 at the last step)."""


class DiffusionSampler:
    """Training noise (``add_noise``/``target``) and sampling (``sample``) for one schedule."""

    def __init__(self, config: NoiseScheduleConfig):
        if config.prediction_type not in PREDICTIONS:
            raise ValueError(f"prediction_type must be one of {PREDICTIONS}, got {config.prediction_type!r}")
        if config.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {config.sampler!r}")
        self.config = config
        kwargs = dict(
            num_train_timesteps=config.num_train_timesteps,
            beta_schedule=config.beta_schedule,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            prediction_type=config.prediction_type,
            clip_sample=config.clip_sample,
            clip_sample_range=config.clip_sample_range,
        )
        self.schedulers = {"ddpm": DDPMScheduler(**kwargs), "ddim": DDIMScheduler(**kwargs)}
        # float64 for the coefficient math; tensors are cast to the sample dtype where used.
        self.alphas_cumprod = self.schedulers["ddpm"].alphas_cumprod.to(torch.float64)
        self._final_alpha = {
            "ddpm": float(self.schedulers["ddpm"].one),
            "ddim": float(self.schedulers["ddim"].final_alpha_cumprod),
        }
        self._plans: dict[tuple[str, int], list[StepCoefficients]] = {}

    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    # --- training ----------------------------------------------------------------------------
    def sample_timesteps(self, shape: tuple[int, ...], device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform random training timesteps (long) of any shape: (B,) or per slot (B, H)."""
        return torch.randint(0, self.num_train_timesteps, shape, device=device, generator=generator)

    def _alpha(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        a = self.alphas_cumprod.to(device=t.device)[t].to(like.dtype)
        # (B,) -> (B, 1, 1); per slot (B, H) -> (B, H, 1)
        return a.reshape(*a.shape, *([1] * (like.dim() - a.dim())))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward process q(x_t | x0): ``sqrt(a_t) x0 + sqrt(1 - a_t) noise``; t (B,) or (B, H)."""
        a = self._alpha(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the denoiser is trained to output."""
        return noise if self.config.prediction_type == "epsilon" else x0

    # --- sampling ----------------------------------------------------------------------------
    def coefficients(self, t: torch.Tensor, t_prev: torch.Tensor, sampler: str) -> dict[str, torch.Tensor]:
        """Step coefficients for timesteps ``t`` -> ``t_prev`` (long tensors of any shape; a
        negative ``t_prev`` means the final step to the clean sample)."""
        ac = self.alphas_cumprod.to(t.device)
        a_t = ac[t]
        a_prev = torch.where(t_prev >= 0, ac[t_prev.clamp_min(0)], torch.full_like(a_t, self._final_alpha[sampler]))
        out = {"sqrt_alpha": a_t.sqrt(), "sqrt_one_minus_alpha": (1 - a_t).sqrt()}
        if sampler == "ddim":  # eta = 0: deterministic
            out.update(c_x0=a_prev.sqrt(), c_xt=torch.zeros_like(a_t), c_eps=(1 - a_prev).sqrt(), sigma=torch.zeros_like(a_t))
        elif sampler == "ddpm":  # posterior mean and "fixed_small" variance
            beta = 1 - a_t / a_prev
            var = ((1 - a_prev) / (1 - a_t) * beta).clamp_min(1e-20)
            out.update(
                c_x0=a_prev.sqrt() * beta / (1 - a_t),
                c_xt=(a_t / a_prev).sqrt() * (1 - a_prev) / (1 - a_t),
                c_eps=torch.zeros_like(a_t),
                sigma=torch.where(t > 0, var.sqrt(), torch.zeros_like(var)),
            )
        else:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        return out

    def plan(self, sampler: str | None = None, num_steps: int | None = None) -> list[StepCoefficients]:
        """The denoising steps (highest noise first) with their coefficients; cached."""
        sampler = sampler or self.config.sampler
        num_steps = num_steps or self.config.num_inference_steps or self.num_train_timesteps
        key = (sampler, num_steps)
        if key not in self._plans:
            if sampler not in SAMPLERS:
                raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
            if not 1 <= num_steps <= self.num_train_timesteps:
                raise ValueError(f"num_inference_steps must be in [1, {self.num_train_timesteps}], got {num_steps}")
            sched = self.schedulers[sampler]
            sched.set_timesteps(num_steps)
            ts = sched.timesteps.to(torch.long)
            if sampler == "ddpm":
                prev = torch.stack([torch.as_tensor(sched.previous_timestep(t)) for t in ts]).to(torch.long)
            else:  # diffusers' DDIM step: prev = t - T // n
                prev = ts - self.num_train_timesteps // num_steps
            c = self.coefficients(ts, prev, sampler)
            self._plans[key] = [
                StepCoefficients(i, int(ts[i]), *(float(c[k][i]) for k in ("sqrt_alpha", "sqrt_one_minus_alpha", "c_x0", "c_xt", "c_eps", "sigma")))
                for i in range(len(ts))
            ]
        return self._plans[key]

    def step(self, s: StepCoefficients, x: torch.Tensor, model_out: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """One update x_t -> x_{t_prev}; ``noise`` is needed when ``s.sigma > 0``."""
        cfg = self.config
        if cfg.prediction_type == "epsilon":
            eps = model_out
            x0 = (x - s.sqrt_one_minus_alpha * eps) / s.sqrt_alpha
        else:
            x0 = model_out
            eps = (x - s.sqrt_alpha * x0) / s.sqrt_one_minus_alpha if s.c_eps else None
        if cfg.clip_sample:
            x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
        out = x0 * s.c_x0
        if s.c_xt:
            out = out + s.c_xt * x
        if s.c_eps:
            out = out + s.c_eps * eps
        if s.sigma:
            if noise is None:
                raise ValueError(f"stochastic step at t={s.t} needs noise")
            out = out + s.sigma * noise
        return out

    def sample(
        self,
        denoise: Callable[[torch.Tensor, StepCoefficients], torch.Tensor],
        shape: tuple[int, ...],
        *,
        sampler: str | None = None,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Run the reverse process from pure noise. ``denoise(x_t, step)`` returns the model output
        for ``x_t`` at ``step.t`` (``step.index`` lets a caller use per-step values it precomputed
        from ``plan()``, e.g. all timestep embeddings in one batch)."""
        x = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        for s in self.plan(sampler, num_steps):
            out = denoise(x, s)
            noise = torch.randn(shape, generator=generator, device=device, dtype=dtype) if s.sigma else None
            x = self.step(s, x, out, noise)
        return x
