"""Samplers turning a trained denoiser into actions."""

from robopolicy.samplers.diffusion import DiffusionSampler, NoiseScheduleConfig, StepCoefficients

__all__ = ["DiffusionSampler", "NoiseScheduleConfig", "StepCoefficients"]
