"""Masked discrete diffusion over a sequence of L tokens (MaskGIT / LLaDA style), for policies that
predict discrete action tokens: the training-time masking and the two decoders.

* Mask schedule ``gamma(r)``, r in [0, 1]: the fraction of tokens still masked at progress r;
  ``gamma(0) = 1`` (all masked), ``gamma(1) = 0`` (all committed). cosine: ``cos(pi/2 r)``;
  linear: ``1 - r``.
* Training (``training_mask``): per sample, r ~ U(0, 1) and ``ceil(gamma(r) L)`` positions (at
  least one) chosen uniformly are masked; the loss is taken on those positions. Secondary
  remasking reads the model's output at *visible* (committed) positions, which that loss never
  trains; ``random_token_inputs`` and ``own_prediction_inputs`` corrupt part of the visible tokens
  (uniformly random bins; the model's own greedy guesses) so that a loss on the visible positions
  teaches the model to score a committed token: high when it fits the context, low when not.
* Parallel decoding (``decode_parallel``) over T rounds: after round t, ``L - masked_after[t]``
  tokens are committed, ``masked_after[t] = floor(gamma(t/T) L)`` (forced to shrink by at least
  one per round, 0 after the last). Each round is one evaluation of ``logits_fn``; the still-masked
  positions with the highest score are committed first, so the order adapts to the input. The
  score (``score``) is the confidence (probability of the chosen token) or the confidence gap
  (top-1 minus top-2 probability: low where two values compete). With secondary remasking, a
  previously committed token is re-checked in the light of the current round: it is put back to
  the mask when its current score falls below ``remask_threshold`` (threshold check) or has
  dropped by more than ``remask_drop`` since it was committed (residual-drop check); the lowest
  scores go first, at most as many as stay masked after the round, so the schedule above still
  holds, and they are predicted again, from a masked input, in a later round.
* Autoregressive decoding (``decode_autoregressive``): the same model, one token per evaluation
  from left to right, the rest still masked: exactly L evaluations, the baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

SCHEDULES = ("cosine", "linear")
SCORES = ("confidence", "gap")
LogitsFn = Callable[[torch.Tensor], torch.Tensor]
"""(B, L) long tokens (mask id where masked) -> (B, L, V) logits: one decoder evaluation."""


def mask_ratio(r: torch.Tensor, schedule: str) -> torch.Tensor:
    """gamma(r): the fraction of tokens still masked at progress r in [0, 1]."""
    if schedule == "cosine":
        return torch.cos(0.5 * math.pi * r)
    if schedule == "linear":
        return 1.0 - r
    raise ValueError(f"mask schedule must be one of {SCHEDULES}, got {schedule!r}")


def masked_after_rounds(length: int, rounds: int, schedule: str) -> list[int]:
    """Tokens still masked after each of ``rounds`` decoding rounds (the last entry is 0).
    Rounds beyond ``length`` would commit nothing, so asking for them is an error."""
    if not 1 <= rounds <= length:
        raise ValueError(f"decoding rounds must be in [1, {length}] (the number of action tokens), got {rounds}")
    r = torch.arange(1, rounds + 1, dtype=torch.float64) / rounds
    out, prev = [], length
    for m in torch.floor(mask_ratio(r, schedule) * length + 1e-9).long().tolist():
        # at least one commit per round, and never more masked tokens than rounds left can commit
        m = min(m, prev - 1)
        out.append(max(m, 0))
        prev = out[-1]
    out[-1] = 0
    return out


def training_mask(batch: int, length: int, schedule: str, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, L) bool, True = masked: per sample r ~ U(0,1) and ``max(1, ceil(gamma(r) L))``
    uniformly chosen positions."""
    r = torch.rand(batch, device=device, generator=generator)
    n_mask = torch.ceil(mask_ratio(r, schedule) * length).long().clamp_(1, length)
    scores = torch.rand(batch, length, device=device, generator=generator)
    rank = scores.argsort(dim=1).argsort(dim=1)  # each position's rank in a random permutation
    return rank < n_mask[:, None]


def own_prediction_inputs(
    logits_fn: LogitsFn,
    target: torch.Tensor,
    masked: torch.Tensor,
    mask_id: int,
    prob: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and loss positions for one training batch (module docstring).

    ``target`` (B, L) true tokens, ``masked`` (B, L) the training mask. Each sample, with
    probability ``prob``, has a share u ~ U(0, 1) of its visible tokens replaced by the model's own
    greedy prediction from an input where they are masked too (one no-grad evaluation).
    Returns (tokens, predict): the (B, L) input tokens and the (B, L) bool positions where the
    loss is taken: the masked ones and the model-filled ones (whose guess may or may not be right)."""
    tokens = target.masked_fill(masked, mask_id)
    if prob <= 0:
        return tokens, masked
    b, n = target.shape
    dev = target.device
    chosen = torch.rand(b, device=dev, generator=generator) < prob
    share = torch.rand(b, 1, device=dev, generator=generator)
    filled = (~masked) & chosen[:, None] & (torch.rand(b, n, device=dev, generator=generator) < share)
    with torch.no_grad():  # run even when nothing is filled: no host sync on the training step
        pred = logits_fn(tokens.masked_fill(filled, mask_id)).argmax(-1)
    return torch.where(filled, pred, tokens), masked | filled


def random_token_inputs(
    tokens: torch.Tensor, masked: torch.Tensor, n_values: int, prob: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each visible token with probability ``prob`` by a uniformly random value in
    [0, n_values). Returns (tokens, corrupted): the new (B, L) inputs and the (B, L) bool positions
    changed (a random value may equal the true one: it still counts as a corruption draw)."""
    if prob <= 0:
        return tokens, torch.zeros_like(masked)
    dev = tokens.device
    corrupted = (~masked) & (torch.rand(tokens.shape, device=dev, generator=generator) < prob)
    noise = torch.randint(0, n_values, tokens.shape, device=dev, generator=generator)
    return torch.where(corrupted, noise, tokens), corrupted


def _score(probs: torch.Tensor, tokens: torch.Tensor, kind: str) -> torch.Tensor:
    """(B, L) score of ``tokens`` under ``probs`` (B, L, V): its probability ("confidence") or its
    probability minus the best other value's ("gap"; negative when another value is preferred)."""
    p_tok = probs.gather(-1, tokens.clamp_max(probs.shape[-1] - 1).unsqueeze(-1)).squeeze(-1)
    if kind == "confidence":
        return p_tok
    if kind == "gap":
        other = probs.scatter(-1, tokens.clamp_max(probs.shape[-1] - 1).unsqueeze(-1), float("-inf")).amax(-1)
        return p_tok - other
    raise ValueError(f"decoding score must be one of {SCORES}, got {kind!r}")


def _choose(logits: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Token per position and its probability: argmax (temperature 0) or a sample at temperature."""
    if temperature <= 0:
        probs = logits.float().softmax(-1)
        conf, tok = probs.max(-1)
        return tok, conf
    probs = (logits.float() / temperature).softmax(-1)
    tok = torch.multinomial(probs.flatten(0, -2), 1).view(probs.shape[:-1])
    return tok, probs.gather(-1, tok.unsqueeze(-1)).squeeze(-1)


def _lowest_k(score: torch.Tensor, eligible: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: per row, the ``k[b]`` eligible positions with the lowest score."""
    s = score.masked_fill(~eligible, float("inf"))
    rank = s.argsort(dim=1, stable=True).argsort(dim=1)
    return (rank < k[:, None]) & eligible


@dataclass
class DecodeTrace:
    """What a decoder did, for diagnostics and tests."""

    evals: int = 0
    """Evaluations of ``logits_fn`` (decoder forward passes)."""
    committed: list[int] = field(default_factory=list)
    """Per round: committed tokens after the round (summed over the batch)."""
    remasked: list[int] = field(default_factory=list)
    """Per round: previously committed tokens put back to the mask (summed over the batch)."""


def decode_parallel(
    logits_fn: LogitsFn,
    batch: int,
    length: int,
    mask_id: int,
    rounds: int = 12,
    schedule: str = "cosine",
    remask: bool = True,
    remask_threshold: float = 0.05,
    temperature: float = 0.0,
    device=None,
    score: str = "confidence",
    remask_drop: float = 1.0,
) -> tuple[torch.Tensor, DecodeTrace]:
    """Adaptive-order parallel decoding with optional secondary remasking (module docstring).
    ``remask_drop`` >= 1 (confidence) or 2 (gap) disables the residual-drop check.
    Returns (B, L) tokens and the trace; ``trace.evals == rounds``."""
    if score not in SCORES:
        raise ValueError(f"decoding score must be one of {SCORES}, got {score!r}")
    plan = masked_after_rounds(length, rounds, schedule)
    tokens = torch.full((batch, length), mask_id, dtype=torch.long, device=device)
    masked = torch.ones(batch, length, dtype=torch.bool, device=device)
    at_commit = torch.zeros(batch, length, device=device)  # each committed token's score when committed
    trace = DecodeTrace()
    for left in plan:
        logits = logits_fn(tokens)
        trace.evals += 1
        pred, _ = _choose(logits, temperature)
        probs = logits.float().softmax(-1)
        new_score = _score(probs, pred, score)
        committed = ~masked
        n_committed = committed.sum(1)
        reopen = torch.zeros_like(masked)
        if remask and left > 0:
            # Re-check earlier commitments in the light of this round's context.
            now = _score(probs, tokens, score)
            weak = committed & ((now < remask_threshold) | (at_commit - now > remask_drop))
            reopen = _lowest_k(now, weak, torch.full_like(n_committed, left))
        # Commit the highest-scoring still-masked predictions up to the schedule's count.
        n_new = (length - left) - (n_committed - reopen.sum(1))
        new = _lowest_k(-new_score, masked, n_new)
        tokens = torch.where(new, pred, tokens)
        tokens = torch.where(reopen, torch.full_like(tokens, mask_id), tokens)
        at_commit = torch.where(new, new_score, at_commit)
        masked = (masked & ~new) | reopen
        trace.committed.append(int((~masked).sum()))
        trace.remasked.append(int(reopen.sum()))
    return tokens, trace


def decode_autoregressive(
    logits_fn: LogitsFn, batch: int, length: int, mask_id: int, temperature: float = 0.0, device=None
) -> tuple[torch.Tensor, DecodeTrace]:
    """Left to right, one token per evaluation, later positions still masked: L evaluations."""
    tokens = torch.full((batch, length), mask_id, dtype=torch.long, device=device)
    trace = DecodeTrace()
    for i in range(length):
        logits = logits_fn(tokens)
        trace.evals += 1
        pred, _ = _choose(logits[:, i : i + 1], temperature)
        tokens[:, i] = pred[:, 0]
        trace.committed.append(batch * (i + 1))
        trace.remasked.append(0)
    return tokens, trace
