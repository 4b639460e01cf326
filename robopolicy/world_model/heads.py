"""The success / reward / termination heads every world model shares.

``OutcomeHeads`` is a residual MLP (``denoiser.ResidualMLP``, 3 outputs) from a conditioning
vector (the models feed it the normalized state history and the actions taken) to the success
logit, the normalized dense reward and the termination logit. ``outcome_loss`` is the weighted
BCE + MSE + BCE on ``next.success`` / ``next.reward`` / ``next.done``; ``outcome_predictions``
turns the outputs into what ``StepOutput`` and ``predict_heads`` report (probabilities, raw reward).
The reward is normalized by the model's ``Normalizer`` entry for ``next.reward`` (mean_std).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from robopolicy.normalize import Normalizer
from robopolicy.world_model.denoiser import ResidualMLP
from robopolicy.world_model.play import DONE_KEY, REWARD_KEY, SUCCESS_KEY


class OutcomeHeads(ResidualMLP):
    """in_dim -> (success logit, normalized reward, done logit), each (B,)."""

    def __init__(self, in_dim: int, hidden: int, depth: int):
        super().__init__(in_dim, 3, hidden, depth)

    def outcomes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self(x)
        return out[:, 0], out[:, 1], out[:, 2]


def outcome_loss(outcomes: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch: dict[str, Any],
                 normalizer: Normalizer, success_weight: float, reward_weight: float,
                 done_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the success BCE, the normalized-reward MSE and the termination BCE."""
    succ_logit, reward_n, done_logit = outcomes
    reward_target = normalizer.normalize(REWARD_KEY, batch[REWARD_KEY].float().view(-1, 1)).view(-1)
    succ = F.binary_cross_entropy_with_logits(succ_logit.float(), batch[SUCCESS_KEY].float().view(-1))
    rew = F.mse_loss(reward_n.float(), reward_target)
    done = F.binary_cross_entropy_with_logits(done_logit.float(), batch[DONE_KEY].float().view(-1))
    total = success_weight * succ + reward_weight * rew + done_weight * done
    return total, {"success_bce": float(succ.detach()), "reward_mse": float(rew.detach()),
                   "done_bce": float(done.detach())}


def outcome_predictions(outcomes: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                        normalizer: Normalizer) -> dict[str, torch.Tensor]:
    """Success probability, raw reward and termination probability (B,) from the heads' outputs."""
    succ_logit, reward_n, done_logit = outcomes
    return {SUCCESS_KEY: torch.sigmoid(succ_logit), DONE_KEY: torch.sigmoid(done_logit),
            REWARD_KEY: normalizer.unnormalize(REWARD_KEY, reward_n.view(-1, 1)).view(-1)}
