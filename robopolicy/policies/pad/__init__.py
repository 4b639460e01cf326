"""PAD (Prediction with Action): one DiT that denoises future frames and the action chunk together."""

from robopolicy.policies.pad.config import PADConfig
from robopolicy.policies.pad.model import PADPolicy

__all__ = ["PADConfig", "PADPolicy"]
