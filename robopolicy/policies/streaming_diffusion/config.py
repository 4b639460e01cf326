"""Configuration of Streaming Diffusion Policy (Høeg et al. 2024, arXiv 2406.04806)."""

from __future__ import annotations

from dataclasses import dataclass

from robopolicy.policies.diffusion.config import DiffusionConfig
from robopolicy.samplers.streaming import BufferLayout


@dataclass
class SDPConfig(DiffusionConfig):
    """Streaming Diffusion Policy: Diffusion Policy's encoder and UNet denoising an action buffer
    whose slots carry their own noise level. ``noise.sampler`` (ddim | ddpm) picks the per-slot
    update; ``noise.num_inference_steps`` is unused (the level grid is ``steps_per_act`` x chunks)."""

    n_action_steps: int = 1
    """Actions executed per ``act`` call: the buffer's chunk size (1 = re-plan every control step)."""
    steps_per_act: int = 1
    """Denoiser evaluations per streaming ``act`` call; the buffer has (chunks x this) noise levels."""
    constant_noise_prob: float = 0.2
    """Training samples whose slots all share one random timestep (cold start); the rest chunk-wise."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps_per_act < 1:
            raise ValueError(f"steps_per_act must be >= 1, got {self.steps_per_act}")
        if not 0.0 <= self.constant_noise_prob <= 1.0:
            raise ValueError(f"constant_noise_prob must be in [0, 1], got {self.constant_noise_prob}")
        levels = self.layout().num_chunks * self.steps_per_act
        if levels > self.noise.num_train_timesteps:
            raise ValueError(
                f"{self.layout().num_chunks} chunks x steps_per_act {self.steps_per_act} = {levels} noise levels "
                f"exceed noise.num_train_timesteps {self.noise.num_train_timesteps}"
            )

    def layout(self) -> BufferLayout:
        """How the horizon splits into past slots and chunks of ``n_action_steps``."""
        return BufferLayout(self.horizon, self.n_obs_steps - 1, self.n_action_steps)

    @classmethod
    def tiny(cls) -> "SDPConfig":
        """A seconds-fast configuration for tests."""
        base = DiffusionConfig.tiny()
        return cls(**{**vars(base), "n_action_steps": 1, "steps_per_act": 1})
