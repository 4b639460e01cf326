"""Typed configs of the state world model (saved in its checkpoint; Hydra group ``model``)."""

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
