"""Returns, advantages and sample weights of imagined episodes (pure numpy: easy to test).

Reward of step t (only the steps the evaluator counts, ``t < length``):

    r_t = reward_weight * reward_head_t + success_bonus * [t is the first imagined success]

The default (``reward_weight=0``) is the success head alone: the return-to-go of a success at step
L is ``success_bonus * gamma^(L-1-t)``, so quicker successes score higher. A positive
``reward_weight`` adds the reward head's dense reward; note that an episode ends at its first
success, so a dense reward that is positive everywhere pays failures for running longer.

Advantages compare each step's return-to-go with the mean return-to-go at the same step of the
other episodes that started from the same real initial state (``groups``; the whole batch when a
state has a single episode), normalised by their standard deviation over all counted steps.
"""

from __future__ import annotations

import numpy as np


def step_rewards(rewards: np.ndarray, length: np.ndarray, success: np.ndarray, reward_weight: float = 0.0,
                 success_bonus: float = 1.0) -> np.ndarray:
    """(E, T) shaped rewards: zero past each episode's ``length``; the success bonus at its last
    counted step when it succeeded (``length`` is then the step of the first success)."""
    E, T = rewards.shape
    valid = np.arange(T)[None, :] < length[:, None]
    r = np.where(valid, reward_weight * rewards.astype(np.float64), 0.0)
    rows = np.flatnonzero(success & (length >= 1))
    r[rows, length[rows] - 1] += success_bonus
    return r


def returns_to_go(r: np.ndarray, gamma: float) -> np.ndarray:
    """(E, T) discounted sums ``G_t = sum_{k >= t} gamma^(k-t) r_k``."""
    G = np.zeros_like(r, dtype=np.float64)
    acc = np.zeros(r.shape[0])
    for t in range(r.shape[1] - 1, -1, -1):
        acc = r[:, t] + gamma * acc
        G[:, t] = acc
    return G


def advantages(G: np.ndarray, valid: np.ndarray, groups: np.ndarray | None = None,
               normalize: bool = True) -> np.ndarray:
    """(E, T) ``G`` minus the mean ``G`` at the same step over the counted episodes of the same
    group (of the batch when fewer than two are counted there), divided by the std over counted
    steps (``normalize``); 0 where not counted."""
    E, T = G.shape
    groups = np.zeros(E, dtype=np.int64) if groups is None else np.asarray(groups)
    v = valid.astype(np.float64)
    all_n = v.sum(0)
    all_mean = (G * v).sum(0) / np.maximum(all_n, 1)
    base = np.broadcast_to(all_mean, (E, T)).copy()
    for g in np.unique(groups):
        rows = groups == g
        n = v[rows].sum(0)
        mean = (G[rows] * v[rows]).sum(0) / np.maximum(n, 1)
        base[rows] = np.where(n >= 2, mean, all_mean)[None, :]
    A = np.where(valid, G - base, 0.0)
    if normalize and valid.any():
        std = A[valid].std()
        if std > 1e-8:
            A = A / std
    return A


def awr_weights(A: np.ndarray, valid: np.ndarray, beta: float = 1.0, max_weight: float = 20.0) -> np.ndarray:
    """Advantage-weighted regression weights ``min(exp(A / beta), max_weight)``, 0 where not counted."""
    if beta <= 0 or max_weight <= 0:
        raise ValueError(f"awr_weights: beta and max_weight must be > 0, got {beta}, {max_weight}")
    w = np.minimum(np.exp(np.clip(A / beta, -50.0, 50.0)), max_weight)
    return np.where(valid, w, 0.0)


def filter_weights(episode_return: np.ndarray, success: np.ndarray, valid: np.ndarray,
                   top_fraction: float = 1.0) -> np.ndarray:
    """Filtered behaviour cloning: weight 1 on every counted step of the kept episodes (the
    successful ones; with ``top_fraction < 1`` only that fraction of them with the highest
    returns, at least one), 0 elsewhere."""
    if not 0 < top_fraction <= 1:
        raise ValueError(f"filter_weights: top_fraction must lie in (0, 1], got {top_fraction}")
    ok = np.flatnonzero(success)
    keep = np.zeros(len(success), dtype=bool)
    if ok.size:
        n = max(1, int(np.ceil(top_fraction * ok.size)))
        keep[ok[np.argsort(-episode_return[ok], kind="stable")[:n]]] = True
    return np.where(valid & keep[:, None], 1.0, 0.0)
