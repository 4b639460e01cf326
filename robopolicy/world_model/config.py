"""Typed configs of the world models (saved in their checkpoints): ``StateWorldModelConfig`` (the
``model`` field of ``robopolicy-train-wm``) and ``ImageWorldModelConfig`` (its ``image_model`` field,
used with ``obs=image``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from robopolicy.tokenizers.action import TokenizerConfig

OBJECTIVES = ("diffusion", "regression")
SAMPLERS = ("euler", "heun")


@dataclass
class EDMConfig:
    """EDM (Karras et al. 2022) noise levels for training and the few-step sampler."""

    sigma_min: float = 2e-3
    """Smallest noise level of the sampling schedule."""
    sigma_max: float = 5.0
    """Largest noise level of the sampling schedule (targets have unit std, as in DIAMOND)."""
    sigma_data: float = 1.0
    """Std of the clean targets (state deltas are normalized to unit std)."""
    rho: float = 7.0
    """Karras schedule curvature."""
    p_mean: float = -0.4
    """Mean of log(sigma) drawn in training."""
    p_std: float = 1.2
    """Std of log(sigma) drawn in training."""
    num_steps: int = 3
    """Denoising steps per imagined env step."""
    sampler: str = "euler"
    """euler (one network call per step) | heun (two, second order)."""

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max or self.sigma_data <= 0 or self.p_std <= 0:
            raise ValueError(f"edm: need 0 < sigma_min < sigma_max, sigma_data > 0, p_std > 0; got {self}")
        if self.num_steps < 1:
            raise ValueError(f"edm.num_steps must be >= 1, got {self.num_steps}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"edm.sampler must be one of {SAMPLERS}, got {self.sampler!r}")


@dataclass
class StateWorldModelConfig:
    """State world model: next state(s) from past states and actions, plus reward/success/done heads."""

    objective: str = "diffusion"
    """diffusion (EDM over the next-state delta) | regression (the same network, deterministic MSE: the baseline)."""
    n_history: int = 2
    """States the model conditions on (the current one and n-1 before it), with their actions."""
    n_future: int = 1
    """Next states predicted jointly (needs that many actions; imagined envs use the first)."""
    hidden_dim: int = 256
    """Width of the residual-MLP denoiser."""
    depth: int = 4
    """Residual blocks of the denoiser."""
    noise_embed_dim: int = 64
    """Width of the noise-level embedding that modulates every block (FiLM)."""
    dropout: float = 0.0
    """Dropout inside the residual blocks."""
    head_hidden_dim: int = 256
    """Width of the reward / success / termination head."""
    head_depth: int = 2
    """Residual blocks of the head."""
    success_weight: float = 1.0
    """Weight of the success BCE in the loss."""
    reward_weight: float = 1.0
    """Weight of the (normalized) reward MSE in the loss."""
    done_weight: float = 0.1
    """Weight of the termination BCE in the loss."""
    state_normalization: str = "min_max"
    """How observation.state is normalized: min_max | mean_std."""
    delta_std_floor: float = 1e-3
    """Smallest std (normalized state units) used to scale a state dimension's per-step change."""
    clip_state: Optional[float] = 1.5
    """Imagined states are clipped to +-this in normalized units (near the data's support); None: no clip."""
    edm: EDMConfig = field(default_factory=EDMConfig)
    """Noise levels and sampler (diffusion objective only)."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Action normalization (the shared ActionTokenizer; continuous kind)."""

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.n_history < 1 or self.n_future < 1 or self.hidden_dim < 1 or self.depth < 1 or self.head_depth < 1:
            raise ValueError("n_history, n_future, hidden_dim, depth and head_depth must be >= 1")
        if self.noise_embed_dim < 2 or self.noise_embed_dim % 2:
            raise ValueError(f"noise_embed_dim must be an even number >= 2, got {self.noise_embed_dim}")
        if self.tokenizer.kind != "continuous":
            raise ValueError("the state world model takes continuous actions (tokenizer.kind=continuous)")
        if self.state_normalization not in ("min_max", "mean_std"):
            raise ValueError(f"state_normalization must be min_max or mean_std, got {self.state_normalization!r}")
        if self.clip_state is not None and self.clip_state <= 0:
            raise ValueError(f"clip_state must be > 0 or None, got {self.clip_state}")


@dataclass
class ImageWorldModelConfig:
    """Image world model: the next camera frame and the next state from the last frames (stacked on
    channels), past states and actions, by one DiT denoising both (EDM), plus the shared heads."""

    camera: Optional[str] = None
    """Camera predicted (name without observation.images.); None: the dataset's first camera."""
    n_history: int = 4
    """Frames (and states, with their actions) the model conditions on: the current one and n-1 before it."""
    patch_size: int = 8
    """Side of the square patches the frames are cut into (must divide the frame height and width)."""
    dim: int = 128
    """Width of the DiT tokens."""
    depth: int = 4
    """DiT blocks."""
    n_heads: int = 4
    """Attention heads per block (must divide dim)."""
    mlp_ratio: float = 4.0
    """MLP width of each block / dim."""
    dropout: float = 0.0
    """Dropout inside the DiT blocks."""
    frame_target: str = "residual"
    """What is denoised for the frame: residual (next frame minus the last one, [-1, 1] pixels: most of
    it is 0, so an untrained model already copies the last frame) | frame (the next frame itself, as DIAMOND)."""
    residual_std: Optional[float] = None
    """frame_target=residual: the residual's std ([-1, 1] pixels, one number over all pixels of the
    training transitions). The residual is divided by it and multiplied by ``edm.sigma_data``, so
    the diffusion sees data of the std EDM's preconditioning assumes (the raw residual is mostly 0:
    std 0.035 on the push-v3 play data of scripts/bench_world_model_image.py, 1/14 of sigma_data,
    and the noise a few-step sampler leaves then shows at full scale). ``from_episodes`` measures
    it and the checkpoint keeps it; None (a model built without data, or a checkpoint from before
    this field): unscaled."""
    state_loss_weight: float = 1.0
    """Weight of the next-state part of the diffusion loss (the frame part has weight 1)."""
    head_hidden_dim: int = 256
    """Width of the reward / success / termination head."""
    head_depth: int = 2
    """Residual blocks of the head."""
    success_weight: float = 1.0
    """Weight of the success BCE in the loss."""
    reward_weight: float = 1.0
    """Weight of the (normalized) reward MSE in the loss."""
    done_weight: float = 0.1
    """Weight of the termination BCE in the loss."""
    state_normalization: str = "min_max"
    """How observation.state is normalized: min_max | mean_std."""
    delta_std_floor: float = 1e-3
    """Smallest std (normalized state units) used to scale a state dimension's per-step change."""
    clip_state: Optional[float] = 1.5
    """Imagined states are clipped to +-this in normalized units (near the data's support); None: no clip."""
    edm: EDMConfig = field(default_factory=lambda: EDMConfig(sigma_data=0.5))
    """Noise levels and sampler; sigma_data 0.5 as DIAMOND (frames in [-1, 1], state deltas scaled to std 0.5)."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Action normalization (the shared ActionTokenizer; continuous kind)."""

    def __post_init__(self) -> None:
        if self.n_history < 1 or self.patch_size < 1 or self.dim < 1 or self.depth < 1 or self.head_depth < 1:
            raise ValueError("image_model: n_history, patch_size, dim, depth and head_depth must be >= 1")
        if self.n_heads < 1 or self.dim % self.n_heads:
            raise ValueError(f"image_model: dim {self.dim} must be divisible by n_heads {self.n_heads}")
        if self.dim % 4:
            raise ValueError(f"image_model: dim must be divisible by 4 (2-D sin/cos positions), got {self.dim}")
        if self.mlp_ratio <= 0 or not 0 <= self.dropout < 1 or self.state_loss_weight < 0:
            raise ValueError("image_model: need mlp_ratio > 0, 0 <= dropout < 1, state_loss_weight >= 0")
        if self.residual_std is not None and not self.residual_std > 0:
            raise ValueError(f"image_model.residual_std must be > 0 or None, got {self.residual_std}")
        if self.frame_target not in ("residual", "frame"):
            raise ValueError(f"image_model.frame_target must be residual or frame, got {self.frame_target!r}")
        if self.tokenizer.kind != "continuous":
            raise ValueError("the image world model takes continuous actions (tokenizer.kind=continuous)")
        if self.state_normalization not in ("min_max", "mean_std"):
            raise ValueError(f"state_normalization must be min_max or mean_std, got {self.state_normalization!r}")
        if self.clip_state is not None and self.clip_state <= 0:
            raise ValueError(f"clip_state must be > 0 or None, got {self.clip_state}")
