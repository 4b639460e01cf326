"""EDM preconditioning (Karras et al. 2022) and the few-step Euler / Heun sampler.

The sampling noise levels are diffusers' Karras schedule (``EDMEulerScheduler``); the
preconditioning is EDM's: the network F sees ``c_in * x`` and ``c_noise = log(sigma) / 4`` and the
denoised estimate is ``D = c_skip * x + c_out * F``. Training regresses F on
``(x0 - c_skip * x) / c_out``, which is EDM's loss weighting in unweighted form (as DIAMOND).
"""

from __future__ import annotations

from typing import Callable

import torch

from robopolicy.world_model.config import EDMConfig

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(c_in * x, c_noise) -> F, both with x's leading batch axis."""
NOISE_FEATURE_SCALE = 100.0
"""c_noise = log(sigma)/4 spans about [-1.6, 0.4]; denoisers multiply it by this before their
sinusoidal noise-level features (periods 1 to 1e4), so those features resolve it."""


def karras_sigmas(cfg: EDMConfig) -> list[float]:
    """The ``num_steps + 1`` noise levels of the sampler, from sigma_max down to 0 (diffusers)."""
    from diffusers import EDMEulerScheduler

    sched = EDMEulerScheduler(sigma_min=cfg.sigma_min, sigma_max=cfg.sigma_max, sigma_data=cfg.sigma_data,
                              rho=cfg.rho, sigma_schedule="karras", final_sigmas_type="zero")
    sched.set_timesteps(cfg.num_steps)
    return [float(s) for s in sched.sigmas]


def coefficients(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise) for noise levels ``sigma`` (any shape)."""
    sd2 = sigma_data**2
    s2 = sigma**2
    c_skip = sd2 / (s2 + sd2)
    c_out = sigma * sigma_data / (s2 + sd2).sqrt()
    c_in = 1.0 / (s2 + sd2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def training_sigmas(n: int, cfg: EDMConfig, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,) noise levels with log(sigma) ~ N(p_mean, p_std^2)."""
    z = torch.randn(n, device=device, generator=generator)
    return (z * cfg.p_std + cfg.p_mean).exp()


def denoise(net: Denoiser, x: torch.Tensor, sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """EDM's D(x, sigma); ``sigma`` is (B,) and broadcasts over x's trailing axes."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    c_skip, c_out, c_in, c_noise = coefficients(sigma, sigma_data)
    return c_skip.view(shape) * x + c_out.view(shape) * net(c_in.view(shape) * x, c_noise)


def training_target(x0: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """What F should output at the noisy ``x`` of clean ``x0``."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    c_skip, c_out, _, _ = coefficients(sigma, sigma_data)
    return (x0 - c_skip.view(shape) * x) / c_out.view(shape)


@torch.no_grad()
def sample(net: Denoiser, shape: tuple[int, ...], sigmas: list[float], sigma_data: float, sampler: str = "euler",
           generator: torch.Generator | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Draw x0 from noise with ``len(sigmas) - 1`` Euler (or Heun) steps along ``sigmas``."""
    x = torch.randn(shape, generator=generator, device=device, dtype=dtype) * sigmas[0]
    ones = torch.ones(shape[0], device=x.device, dtype=dtype)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoise(net, x, ones * s, sigma_data)) / s
        x_next = x + d * (s_next - s)
        if sampler == "heun" and s_next > 0:
            d2 = (x_next - denoise(net, x_next, ones * s_next, sigma_data)) / s_next
            x_next = x + (d + d2) / 2 * (s_next - s)
        x = x_next
    return x
