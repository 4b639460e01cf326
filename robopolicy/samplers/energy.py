"""Gradient descent on a learned energy ``E(y)`` over candidate action chunks ``y`` (B, H, A).

Each step is

    y_{k+1} = y_k - a * dE/dy (y_k + s * z),       z ~ N(0, I)

with step size ``a`` (a scalar, or one per sample ``(B, 1, 1)``) and optional Langevin noise of
scale ``s``. In training the noise sits on the point where the gradient is taken (as the EBT code
does: it explores the landscape without being carried into the iterate, so a loss on the iterates
has no noise floor); at inference it is added to the iterate after the step (classic Langevin
sampling), so that the energies used to decide when to stop are those of the returned iterates.

* ``unroll`` (training): a fixed number of steps with ``create_graph=True``, so that a loss on the
  iterates back-propagates through every step into the energy's parameters (second-order
  gradients) and into the step size.
* ``descend`` (inference): adaptive. It stops an element once its last step moved it by at most
  ``tol`` (root-mean-square over the chunk, in the units of ``y``): the descent has converged, the
  energy has stopped falling. Otherwise it stops after ``steps`` updates if its energy is at or
  below ``threshold``, and keeps descending up to ``max_steps`` while its energy stays above it.
  ``max_steps == steps`` and ``tol=None`` is plain fixed-step descent.
  Why the step length and not the energy decrease: near its minimum a smooth energy is flat to
  first order, so its decrease vanishes (quadratically) while the iterate still moves by a useful
  amount; an energy's scale and offset are also arbitrary, so no relative tolerance on it means
  the same thing for two models. On a trained Meta-World reach policy the energy changed by 0.04%
  between steps 2 and 3 while the distance to the demonstration still fell 3x
  (``scripts/ebt_descent_trace.py``).
  Every step costs one energy forward and one backward; stopping costs a forward only (the stop is
  decided before the gradient is taken), so ``k`` steps cost ``k + 1`` forwards and ``k``
  backwards. Runs with gradients on even when called under ``torch.inference_mode()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

EnergyFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps candidate chunks (B, H, A) to energies (B,); lower is better."""


@dataclass
class Unrolled:
    """What ``unroll`` returns."""

    iterates: list[torch.Tensor]
    """y_1 .. y_K (each (B, H, A)), attached to the graph."""
    energies: list[torch.Tensor]
    """E at the points the gradients were taken, one (B,) per step (attached)."""


@dataclass
class Descent:
    """What ``descend`` returns (all detached)."""

    y: torch.Tensor
    """(B, H, A) final iterate per element."""
    energy: torch.Tensor
    """(B,) energy of the final iterate."""
    steps: torch.Tensor
    """(B,) long: gradient steps applied to each element."""
    history: torch.Tensor
    """(evaluations, B): the energy at every evaluation (rows after an element stopped repeat it)."""


def _step_size(step_size: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(step_size, dtype=like.dtype, device=like.device)
    if a.dim() not in (0, like.dim()):
        raise ValueError(f"step size must be a scalar or shaped (B, 1, 1), got {tuple(a.shape)}")
    return a


def unroll(
    energy_fn: EnergyFn,
    y0: torch.Tensor,
    step_size: torch.Tensor | float,
    num_steps: int,
    noise_std: float = 0.0,
    detach_between_steps: bool = False,
    create_graph: bool = True,
) -> Unrolled:
    """``num_steps`` descent steps from ``y0`` keeping the graph (see the module docstring).
    ``detach_between_steps`` cuts the graph between steps (EBT's default): each step's loss then
    trains one step's landscape; off, the loss of y_K reaches back through every earlier step."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    a = _step_size(step_size, y0)
    y = y0 if y0.requires_grad else y0.detach().requires_grad_()
    iterates, energies = [], []
    for _ in range(num_steps):
        if detach_between_steps and y is not y0:
            y = y.detach().requires_grad_()
        point = y + noise_std * torch.randn_like(y) if noise_std > 0 else y
        e = energy_fn(point)
        (g,) = torch.autograd.grad(e.sum(), y, create_graph=create_graph)
        y = y - a * g
        iterates.append(y)
        energies.append(e)
    return Unrolled(iterates, energies)


def descend(
    energy_fn: EnergyFn,
    y0: torch.Tensor,
    step_size: torch.Tensor | float,
    steps: int,
    max_steps: int | None = None,
    tol: float | None = None,
    threshold: float | torch.Tensor = math.inf,
    noise_std: float = 0.0,
) -> Descent:
    """Adaptive inference descent from ``y0`` (see the module docstring). ``threshold`` may be a
    float or a scalar tensor; ``inf`` (uncalibrated) never extends past ``steps``."""
    max_steps = steps if max_steps is None else max_steps
    if not 1 <= steps <= max_steps:
        raise ValueError(f"need 1 <= steps <= max_steps, got steps={steps}, max_steps={max_steps}")
    with torch.inference_mode(False), torch.enable_grad():
        # Fresh leaves: y0 may be an inference tensor (the evaluator calls act under inference_mode).
        y = y0.detach().clone().requires_grad_()
        a = _step_size(step_size, y).detach().clone()
        thr = torch.as_tensor(threshold, dtype=y.dtype, device=y.device).detach().clone()
        b = y.shape[0]
        done = torch.zeros(b, dtype=torch.bool, device=y.device)
        n_steps = torch.zeros(b, dtype=torch.long, device=y.device)
        final = torch.zeros(b, dtype=y.dtype, device=y.device)
        moved_rms, history = None, []
        for k in range(max_steps + 1):
            e = energy_fn(y)
            e_d = e.detach()
            history.append(e_d)
            stop = torch.full_like(done, k >= max_steps)
            if moved_rms is not None and tol is not None:
                stop |= moved_rms <= tol  # converged: the last step hardly moved the chunk
            if k >= steps:
                stop |= e_d <= thr
            newly = stop & ~done
            final = torch.where(newly, e_d, final)
            done |= stop
            if bool(done.all()):
                break
            (g,) = torch.autograd.grad(e.sum(), y)
            z = noise_std * torch.randn_like(y) if noise_std > 0 else 0.0
            delta = -a * g
            moved_rms = delta.pow(2).flatten(1).mean(1).sqrt()
            moved = y.detach() + delta + z
            y = torch.where(done[:, None, None], y.detach(), moved).requires_grad_()
            n_steps += (~done).long()
        return Descent(y.detach(), final, n_steps, torch.stack(history))
