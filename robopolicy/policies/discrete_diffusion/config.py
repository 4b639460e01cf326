"""Configuration of Discrete Diffusion VLA (Liang et al. 2025, arXiv 2508.20072)."""

from __future__ import annotations

from dataclasses import dataclass, field

from robopolicy.encoders import EncoderConfig
from robopolicy.normalize import NormalizerConfig
from robopolicy.policies.base import PolicyConfig
from robopolicy.samplers.masked import SCHEDULES, SCORES
from robopolicy.tokenizers import TokenizerConfig

DECODE_MODES = ("parallel", "autoregressive")


def _discrete_tokenizer() -> TokenizerConfig:
    return TokenizerConfig(kind="discrete")


def _token_encoder() -> EncoderConfig:
    return EncoderConfig(use_pooled=False, token_dim=256)


@dataclass
class DDVLAConfig(PolicyConfig):
    """Discrete Diffusion VLA: one transformer over observation tokens and masked discrete action
    tokens, trained by masked discrete diffusion and decoded in a few parallel rounds.

    The decoding fields (``decode_*``, ``remask*``, ``temperature``) change no weights: override
    them at evaluation time (``robopolicy-eval ... +policy_overrides.decode_rounds=4``)."""

    encoder: EncoderConfig = field(default_factory=_token_encoder)
    """Observation encoder (per-camera, state and language tokens); tokens other than d_model wide are projected."""
    normalization: NormalizerConfig = field(default_factory=NormalizerConfig)
    """How state and images are normalized before the encoder."""
    action_tokenizer: TokenizerConfig = field(default_factory=_discrete_tokenizer)
    """Action tokens: must be discrete (n_bins per dimension over q01..q99 by default)."""
    backbone: str = "scratch"
    """scratch (a transformer trained from scratch) | path to a local transformers model folder."""
    d_model: int = 256
    """Width of the tokens entering the backbone (the scratch transformer's width)."""
    n_layers: int = 4
    """Scratch backbone: transformer blocks."""
    n_heads: int = 4
    """Scratch backbone: attention heads."""
    mlp_ratio: float = 4.0
    """Scratch backbone: MLP hidden width / d_model."""
    dropout: float = 0.1
    """Scratch backbone: dropout in attention and MLP (training only)."""
    mask_schedule: str = "cosine"
    """gamma(r), the masked fraction at progress r, for training ratios and decoding: cosine | linear."""
    own_prediction_prob: float = 0.0
    """Training: share of samples whose visible tokens are partly the model's own no-grad predictions
    (as when decoding), with the loss on them too; 0 = the paper's masked-only objective."""
    random_token_prob: float = 0.1
    """Training: share of the remaining visible tokens replaced by uniformly random bins, so the
    visible-position loss teaches the model to score committed tokens (what remasking reads)."""
    visible_loss_weight: float = 0.5
    """Training: weight of the cross-entropy on visible positions (true or corrupted tokens) beside
    the masked-position loss; 0 (with random_token_prob 0) = the masked-only objective."""
    decode_mode: str = "parallel"
    """parallel (adaptive-order rounds) | autoregressive (left to right, one token per evaluation)."""
    decode_rounds: int = 12
    """Parallel decoding: rounds, i.e. decoder evaluations per chunk (at most horizon x action_dim)."""
    remask: bool = True
    """Parallel decoding: secondary remasking of committed tokens whose confidence drops."""
    remask_threshold: float = 0.05
    """Threshold check: remask a committed token whose current score falls below this."""
    remask_drop: float = 0.5
    """Residual-drop check: remask a committed token whose score fell by more than this since it was
    committed (>= 1 with the confidence score, >= 2 with the gap, turns the check off)."""
    decode_score: str = "confidence"
    """Parallel decoding: the score that orders commits and that remasking checks: confidence (the
    chosen value's probability) | gap (top-1 minus top-2 probability)."""
    temperature: float = 0.0
    """Sampling temperature of the token values (0 = greedy argmax, deterministic)."""

    def __post_init__(self) -> None:
        super().__post_init__()  # the shared horizon / obs / action-step checks
        if self.action_tokenizer.kind != "discrete":
            raise ValueError("Discrete Diffusion VLA models action tokens: action_tokenizer.kind must be 'discrete'")
        if self.encoder.token_dim is None:
            raise ValueError("encoder.token_dim must be set: the transformer reads the encoder's tokens")
        if self.mask_schedule not in SCHEDULES:
            raise ValueError(f"mask_schedule must be one of {SCHEDULES}, got {self.mask_schedule!r}")
        if self.decode_mode not in DECODE_MODES:
            raise ValueError(f"decode_mode must be one of {DECODE_MODES}, got {self.decode_mode!r}")
        if not 0.0 <= self.own_prediction_prob <= 1.0:
            raise ValueError(f"own_prediction_prob must be in [0, 1], got {self.own_prediction_prob}")
        if not 0.0 <= self.random_token_prob <= 1.0:
            raise ValueError(f"random_token_prob must be in [0, 1], got {self.random_token_prob}")
        if self.visible_loss_weight < 0:
            raise ValueError(f"visible_loss_weight must be >= 0, got {self.visible_loss_weight}")
        if self.decode_score not in SCORES:
            raise ValueError(f"decode_score must be one of {SCORES}, got {self.decode_score!r}")
        if self.remask_drop < 0:
            raise ValueError(f"remask_drop must be >= 0, got {self.remask_drop}")
        if self.decode_rounds < 1:
            raise ValueError(f"decode_rounds must be >= 1, got {self.decode_rounds}")
        if not 0.0 <= self.remask_threshold <= 1.0:
            raise ValueError(f"remask_threshold must be in [0, 1], got {self.remask_threshold}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not self.backbone:
            raise ValueError("backbone must be 'scratch' or a path to a transformers model folder")

    @classmethod
    def tiny(cls) -> "DDVLAConfig":
        """A seconds-fast configuration for tests."""
        return cls(
            horizon=8,
            n_obs_steps=2,
            n_action_steps=4,
            d_model=32,
            n_layers=2,
            n_heads=2,
            dropout=0.0,
            decode_rounds=4,
            encoder=EncoderConfig(use_pooled=False, token_dim=32, num_keypoints=8, image_feature_dim=16),
            action_tokenizer=TokenizerConfig(kind="discrete", n_bins=32),
        )
