"""Discrete Diffusion VLA: masked discrete diffusion over action tokens in one transformer."""

from robopolicy.policies.discrete_diffusion.config import DDVLAConfig
from robopolicy.policies.discrete_diffusion.model import DDVLAPolicy

__all__ = ["DDVLAConfig", "DDVLAPolicy"]
