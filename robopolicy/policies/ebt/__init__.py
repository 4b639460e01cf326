"""EBT-Policy: an energy-based transformer whose actions are found by gradient descent on its energy."""

from robopolicy.policies.ebt.config import EBTConfig
from robopolicy.policies.ebt.model import EBTPolicy

__all__ = ["EBTConfig", "EBTPolicy"]
