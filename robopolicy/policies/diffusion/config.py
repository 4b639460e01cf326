"""Configuration of the reference Diffusion Policy (Chi et al. 2023)."""

from __future__ import annotations

from dataclasses import dataclass, field

from robopolicy.encoders import EncoderConfig
from robopolicy.normalize import NormalizerConfig
from robopolicy.policies.base import PolicyConfig
from robopolicy.samplers import NoiseScheduleConfig
from robopolicy.tokenizers import TokenizerConfig


@dataclass
class DiffusionConfig(PolicyConfig):
    """Diffusion Policy: a FiLM-conditioned 1-D UNet denoising normalized action chunks."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """Observation encoder; its pooled vector is the UNet's global condition."""
    normalization: NormalizerConfig = field(default_factory=NormalizerConfig)
    """How state and images are normalized before the encoder."""
    action_tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Action representation; must be continuous (normalized actions)."""
    noise: NoiseScheduleConfig = field(default_factory=NoiseScheduleConfig)
    """Noise schedule (diffusers), prediction target and the inference sampler/steps."""
    down_dims: tuple[int, ...] = (64, 128, 256)
    """UNet channel widths per resolution level (the paper uses (512, 1024, 2048))."""
    kernel_size: int = 5
    """Temporal convolution kernel size."""
    n_groups: int = 8
    """GroupNorm groups in the UNet."""
    step_embed_dim: int = 128
    """Width of the diffusion-timestep embedding."""
    film_scale: bool = True
    """FiLM predicts a scale and a bias (True) or only a bias."""
    compile_unet: bool = False
    """torch.compile the UNet for sampling (tens of seconds of compile time on first use)."""
    compile_mode: str = "default"
    """torch.compile mode when ``compile_unet``: default | reduce-overhead (CUDA graphs: removes the
    per-kernel launch cost that dominates batch-1 sampling on a GPU) | max-autotune."""

    def __post_init__(self) -> None:
        super().__post_init__()  # the shared horizon / obs / action-step checks
        levels = len(self.down_dims)
        if self.horizon % (1 << (levels - 1)):
            raise ValueError(f"horizon {self.horizon} must be divisible by 2**(len(down_dims)-1) = {1 << (levels - 1)}")
        if self.action_tokenizer.kind != "continuous":
            raise ValueError("Diffusion Policy denoises continuous actions: action_tokenizer.kind must be 'continuous'")
        self.down_dims = tuple(self.down_dims)
        if self.compile_mode not in ("default", "reduce-overhead", "max-autotune"):
            raise ValueError(f"compile_mode must be default | reduce-overhead | max-autotune, got {self.compile_mode!r}")

    @classmethod
    def tiny(cls) -> "DiffusionConfig":
        """A seconds-fast configuration for tests."""
        return cls(
            horizon=8,
            n_obs_steps=2,
            n_action_steps=4,
            down_dims=(16, 32),
            kernel_size=3,
            n_groups=4,
            step_embed_dim=16,
            encoder=EncoderConfig(num_keypoints=8, image_feature_dim=16),
            noise=NoiseScheduleConfig(num_train_timesteps=20, num_inference_steps=4),
        )
