"""Streaming Diffusion Policy: a per-slot-noise action buffer kept in ``PolicyState``."""

from robopolicy.policies.streaming_diffusion.config import SDPConfig
from robopolicy.policies.streaming_diffusion.model import StreamingDiffusionPolicy

__all__ = ["SDPConfig", "StreamingDiffusionPolicy"]
