"""Configuration of EBT-Policy (Davies et al. 2025, arXiv 2510.27545), an energy-based transformer
policy built on Energy-Based Transformers (Gladstone et al. 2025, arXiv 2507.02092)."""

from __future__ import annotations

from dataclasses import dataclass, field

from robopolicy.encoders import EncoderConfig
from robopolicy.normalize import NormalizerConfig
from robopolicy.policies.base import PolicyConfig
from robopolicy.tokenizers import TokenizerConfig


def _token_encoder() -> EncoderConfig:
    # Transformer families read the encoder's tokens, not its pooled vector.
    return EncoderConfig(use_pooled=False, token_dim=128)


@dataclass
class EBTConfig(PolicyConfig):
    """EBT-Policy: a transformer scores (observation tokens, action chunk) with one scalar energy;
    actions are found by a few gradient steps on that energy, trained by unrolling them."""

    encoder: EncoderConfig = field(default_factory=_token_encoder)
    """Observation encoder; its tokens (width ``dim``) join the action tokens in one sequence."""
    normalization: NormalizerConfig = field(default_factory=NormalizerConfig)
    """How state and images are normalized before the encoder."""
    action_tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Action representation; must be continuous (the descent runs on normalized actions)."""

    # --- the energy transformer ----------------------------------------------------------------
    dim: int = 128
    """Transformer width; the encoder's ``token_dim`` is set to it."""
    depth: int = 4
    """Transformer blocks."""
    action_patch: int = 4
    """Consecutive actions per action token (horizon must be divisible by it)."""
    n_heads: int = 4
    """Attention heads."""
    mlp_ratio: float = 4.0
    """MLP hidden width / dim."""
    dropout: float = 0.0
    """Dropout in attention and MLP (training only)."""

    # --- descent (training and inference) ------------------------------------------------------
    step_size_init: float = 1.0
    """Initial descent step size a (learnable, kept positive as exp(step_size_lr_scale * s))."""
    step_size_lr_scale: float = 10.0
    """Multiplies the step size's log-parameter, i.e. its effective learning rate (EBT trains the
    step size with a much larger learning rate than the network; our one optimizer cannot)."""
    train_steps: int = 2
    """Fewest descent steps unrolled per training sample."""
    train_steps_max: int = 3
    """Most descent steps unrolled in training (drawn uniformly per batch between the two)."""
    step_size_jitter: float = 1.5
    """Per-sample training step size drawn uniformly in [a / j, a * j] (1 = fixed), so the landscape
    does not depend on one exact step size."""
    langevin_noise: float = 0.05
    """Training: std of the noise on the point where each energy gradient is taken (normalized units)."""
    detach_between_steps: bool = False
    """Cut the graph between training steps (EBT's default); False back-propagates through them all."""
    loss_on_all_steps: bool = True
    """Average the loss over every iterate (True) or supervise only the last one."""
    warm_start_prob: float = 0.25
    """Training samples whose start mimics an inference warm start (the demonstration shifted, plus
    noise) instead of pure noise."""
    warm_start_noise: float = 0.1
    """Std of the noise on those simulated warm starts (normalized units)."""

    # --- inference -----------------------------------------------------------------------------
    inference_steps: int = 4
    """Most descent steps per chunk while the energy is at or below the calibrated threshold."""
    max_inference_steps: int = 8
    """Most descent steps while the energy stays above the calibrated threshold."""
    adaptive: bool = True
    """Adaptive stopping (converged / threshold); False runs exactly ``inference_steps`` steps."""
    stop_tol: float = 0.01
    """Converged: stop once the last step moved the chunk by at most this (root-mean-square, in
    normalized action units, i.e. 0.5% of the demonstrations' range for min_max)."""
    energy_quantile: float = 0.9
    """Threshold = this quantile of the final training energies (saved in the checkpoint)."""
    energy_momentum: float = 0.99
    """Momentum of the running quantile of the live weights (per training batch)."""
    calibration_batches: int = 4
    """Training batches on which the weights evaluated and saved (the EMA copy) get their own
    threshold before each checkpoint and evaluation (0 = keep the live weights' running quantile)."""
    inference_noise: float = 0.0
    """Langevin noise added to the iterate at each inference step (0 = deterministic descent)."""
    warm_start: bool = True
    """Start each chunk from the previous one shifted by the executed steps (kept in PolicyState)."""

    def __post_init__(self) -> None:
        super().__post_init__()  # the shared horizon / obs / action-step checks
        if self.action_tokenizer.kind != "continuous":
            raise ValueError("EBT-Policy descends on continuous actions: action_tokenizer.kind must be 'continuous'")
        if self.encoder.use_pooled:
            raise ValueError("EBT-Policy reads the encoder's tokens only: encoder.use_pooled must be False")
        self.encoder.token_dim = self.dim  # the tokens join the transformer's sequence
        if self.action_patch < 1 or self.horizon % self.action_patch:
            raise ValueError(f"horizon {self.horizon} must be divisible by action_patch {self.action_patch}")
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} must be divisible by n_heads {self.n_heads}")
        if not 1 <= self.train_steps <= self.train_steps_max:
            raise ValueError(f"need 1 <= train_steps <= train_steps_max, got {self.train_steps}, {self.train_steps_max}")
        if not 1 <= self.inference_steps <= self.max_inference_steps:
            raise ValueError(
                f"need 1 <= inference_steps <= max_inference_steps, got {self.inference_steps}, {self.max_inference_steps}"
            )
        if self.step_size_init <= 0 or self.step_size_lr_scale <= 0 or self.step_size_jitter < 1:
            raise ValueError("step_size_init and step_size_lr_scale must be > 0 and step_size_jitter >= 1")
        if self.calibration_batches < 0:
            raise ValueError(f"calibration_batches must be >= 0, got {self.calibration_batches}")
        if not 0 <= self.warm_start_prob <= 1 or not 0 < self.energy_quantile < 1 or not 0 <= self.energy_momentum < 1:
            raise ValueError("warm_start_prob must be in [0, 1], energy_quantile in (0, 1), energy_momentum in [0, 1)")

    @classmethod
    def tiny(cls) -> "EBTConfig":
        """A seconds-fast configuration for tests."""
        return cls(
            horizon=8,
            n_obs_steps=2,
            n_action_steps=4,
            dim=32,
            depth=2,
            n_heads=2,
            encoder=EncoderConfig(use_pooled=False, token_dim=32, num_keypoints=8, image_feature_dim=16),
        )
