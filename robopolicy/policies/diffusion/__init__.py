"""The reference Diffusion Policy family."""

from robopolicy.policies.diffusion.config import DiffusionConfig
from robopolicy.policies.diffusion.model import DiffusionPolicy

__all__ = ["DiffusionConfig", "DiffusionPolicy"]
