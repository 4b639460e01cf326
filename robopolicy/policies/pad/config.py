"""Configuration of PAD, Prediction with Action (Guo et al., NeurIPS 2024)."""

from __future__ import annotations

from dataclasses import dataclass, field

from robopolicy.encoders import EncoderConfig
from robopolicy.normalize import NormalizerConfig
from robopolicy.policies.base import PolicyConfig
from robopolicy.samplers import NoiseScheduleConfig
from robopolicy.tokenizers import TokenizerConfig


def _token_encoder() -> EncoderConfig:
    return EncoderConfig(use_pooled=False, token_dim=256)


@dataclass
class PADConfig(PolicyConfig):
    """PAD: one DiT denoising the future frame(s) of the first camera (pixel patches) and the action
    chunk together, in one diffusion process, conditioned on the current observation and instruction.

    ``image_loss_weight=0`` is the action-only ablation: the same DiT with no image tokens at all.
    Without a camera (state observations) there is no frame to predict and PAD is that ablation too."""

    encoder: EncoderConfig = field(default_factory=_token_encoder)
    """Observation encoder (camera, state and instruction tokens, the DiT's context); projected when token_dim != d_model."""
    normalization: NormalizerConfig = field(default_factory=NormalizerConfig)
    """How state and images are normalized before the encoder."""
    action_tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Action representation; must be continuous (normalized actions)."""
    noise: NoiseScheduleConfig = field(default_factory=NoiseScheduleConfig)
    """Noise schedule (diffusers), shared by the image and action tokens, and the inference sampler/steps."""
    d_model: int = 256
    """DiT width (divisible by 4 and by n_heads)."""
    n_layers: int = 4
    """DiT adaLN-Zero blocks."""
    n_heads: int = 4
    """Attention heads."""
    mlp_ratio: float = 4.0
    """MLP hidden width / d_model."""
    dropout: float = 0.0
    """Dropout in attention and MLP (training only)."""
    image_size: int = 64
    """Side of the predicted frames in pixels (the first camera, resized when its frames differ)."""
    patch_size: int = 8
    """Pixels per patch side: (image_size / patch_size)^2 image tokens (64 at 64 / 8)."""
    future_steps: tuple[int, ...] = (8,)
    """Which future frames to predict, in steps ahead of the current one (stacked on channels)."""
    condition_on_current_frame: bool = True
    """Stack the current frame's pixels on the channels of the noisy future frames (PAD's x_cond)."""
    block_image_to_action: bool = True
    """Image tokens do not attend to action tokens (PAD's attention mask on Meta-World): the predicted
    frame is not conditioned on noisy actions, nor on the placeholders of action-free samples."""
    image_loss_weight: float = 1.0
    """Weight of the image (future-frame) loss; 0 = the action-only ablation (image tokens dropped)."""
    action_loss_weight: float = 1.0
    """lambda: weight of the action loss once ramped in."""
    action_loss_warmup_steps: int = 0
    """Training steps with the action loss off (image-only warm-up; the official action_loss_start)."""
    action_loss_ramp_steps: int = 0
    """After the warm-up, steps over which the action weight rises linearly to lambda (0 = at once)."""
    adaln_zero_init: bool = True
    """Zero-init the adaLN modulations and output heads (blocks start as the identity, DiT). False
    draws them like other layers: only for wiring tests, where a zero gate hides every gradient."""

    def __post_init__(self) -> None:
        super().__post_init__()  # the shared horizon / obs / action-step checks
        if self.action_tokenizer.kind != "continuous":
            raise ValueError("PAD denoises continuous actions: action_tokenizer.kind must be 'continuous'")
        if self.encoder.token_dim is None:
            raise ValueError("encoder.token_dim must be set: the DiT reads the encoder's tokens as context")
        if self.d_model % 4 or self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} must be divisible by 4 and by n_heads {self.n_heads}")
        if self.n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {self.n_layers}")
        if self.patch_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        self.future_steps = tuple(int(k) for k in self.future_steps)
        if not self.future_steps or any(k < 1 for k in self.future_steps) or list(self.future_steps) != sorted(set(self.future_steps)):
            raise ValueError(f"future_steps must be increasing steps >= 1, got {self.future_steps}")
        if self.image_loss_weight < 0:
            raise ValueError(f"image_loss_weight must be >= 0, got {self.image_loss_weight}")
        if self.action_loss_weight <= 0:
            raise ValueError(f"action_loss_weight must be > 0 (the actions are what PAD returns), got {self.action_loss_weight}")
        if self.action_loss_warmup_steps < 0 or self.action_loss_ramp_steps < 0:
            raise ValueError("action_loss_warmup_steps and action_loss_ramp_steps must be >= 0")
        if self.image_loss_weight == 0 and self.action_loss_warmup_steps > 0:
            raise ValueError("action-only (image_loss_weight=0) with an action-loss warm-up would train nothing during it")

    @classmethod
    def tiny(cls) -> "PADConfig":
        """A seconds-fast configuration for tests (small DiT, 32x32 frames of 8x8 patches)."""
        return cls(
            horizon=8,
            n_obs_steps=2,
            n_action_steps=4,
            d_model=32,
            n_layers=2,
            n_heads=2,
            image_size=32,
            patch_size=8,
            future_steps=(4,),
            adaln_zero_init=False,
            encoder=EncoderConfig(use_pooled=False, token_dim=32, num_keypoints=8, image_feature_dim=16),
            noise=NoiseScheduleConfig(num_train_timesteps=20, num_inference_steps=4),
        )
