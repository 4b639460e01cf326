"""One policy update of any refinement method: the behaviour-cloning regulariser on a
demonstration batch, a finite-loss check, backward, gradient clipping and the optimizer step."""

from __future__ import annotations

from typing import Any, Callable

import torch


def with_bc(loss: torch.Tensor, policy: Any, demo: Callable[[], dict] | None, bc_weight: float,
            bc_losses: list[float]) -> torch.Tensor:
    """``loss`` + ``bc_weight`` x the policy's own loss on a demonstration batch (when there is one)."""
    if demo is None or bc_weight <= 0:
        return loss
    lb, _ = policy.loss(demo())
    bc_losses.append(float(lb.detach()))
    return loss + bc_weight * lb


def step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: list[torch.Tensor], max_norm: float,
         method: str) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{method}: non-finite loss {float(loss)}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()
