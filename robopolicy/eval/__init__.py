"""Evaluation in simulation: success rates with 95% Wilson CIs, videos, tables (``evaluate``)."""

from robopolicy.eval.evaluate import evaluate
from robopolicy.eval.stats import latency_stats, wilson_interval

__all__ = ["evaluate", "latency_stats", "wilson_interval"]
