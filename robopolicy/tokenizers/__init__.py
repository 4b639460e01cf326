"""Action tokenizers: continuous (normalized) and discrete (binned) behind one API."""

from robopolicy.tokenizers.action import ActionTokenizer, TokenizerConfig, action_stats

__all__ = ["ActionTokenizer", "TokenizerConfig", "action_stats"]
