"""Samplers turning a trained denoiser into actions."""

from robopolicy.samplers.diffusion import DiffusionSampler, NoiseScheduleConfig, StepCoefficients
from robopolicy.samplers.streaming import BufferLayout, StreamingSchedule

__all__ = ["BufferLayout", "DiffusionSampler", "NoiseScheduleConfig", "StepCoefficients", "StreamingSchedule"]
