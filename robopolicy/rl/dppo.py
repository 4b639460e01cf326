"""DPPO for Diffusion Policy (``robopolicy-refine method=dppo``): PPO over the denoising chain.

Following the idea of DPPO (Ren et al. 2024), the sampler's denoising chain is the RL action: the
last ``k_steps`` steps of the policy's DDIM (or DDPM) plan become Gaussian policy steps

    x_{j+1} ~ N(mu_theta(x_j, t_j, obs), std_j^2 I),   std_j = max(sigma_j, min_std)

where ``mu_theta`` is exactly the sampler's deterministic update (``DiffusionSampler.step`` with
zero noise) and the earlier steps stay deterministic. Collection runs through the evaluator's loop
with ``DPPOSource`` (a ``PolicySource`` that samples this chain and keeps, per inference call and
env, the observation, the chain latents and their log-probabilities). Every recorded denoising step
of a chunk inferred at env step t gets that step's advantage (return-to-go from the world model's
success / reward heads minus the same-state baseline, ``returns.advantages``). The update is PPO's
clipped objective on the recomputed log-probabilities, plus ``bc_weight`` times the policy's own
diffusion loss on demonstration batches (the behaviour-cloning regulariser).

The in-model evaluation and every later job run the refined policy's ordinary ``act`` (its
deterministic chain); exploration noise exists only during collection.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from robopolicy.deploy.action_source import PolicySource
from robopolicy.rl.collect import Rollouts
from robopolicy.rl.config import RefineConfig
from robopolicy.rl.update import step as update_step, with_bc
from robopolicy.rl.returns import advantages, returns_to_go, step_rewards


def _gaussian_logp(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Log density of ``x`` under N(mean, std^2 I), summed over all but the batch axis."""
    z = (x - mean) / std
    per = -0.5 * z.pow(2) - float(np.log(std)) - 0.5 * float(np.log(2 * np.pi))
    return per.flatten(1).sum(1)


def _chain_mean(policy: Any, step, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The sampler's update with zero noise: the mean of the Gaussian denoising step."""
    return policy.sampler.step(step, x, out, torch.zeros_like(x))


class DPPOSource(PolicySource):
    """A ``PolicySource`` whose chunks come from the stochastic chain; it records what PPO needs."""

    def __init__(self, policy: torch.nn.Module, n_envs: int, dt: float, k_steps: int, min_std: float):
        super().__init__(policy, n_envs=n_envs, dt=dt)
        self.k_steps, self.min_std = int(k_steps), float(min_std)
        self.records: list[dict[str, Any]] = []

    def pop_records(self) -> list[dict[str, Any]]:
        out, self.records = self.records, []
        return out

    def _infer_stacked(self, stacked, task, t_obs, start):
        import time

        from robopolicy.deploy.chunk import Chunk

        obs = self._to_policy_obs(stacked, task)
        with torch.inference_mode():
            chunk, chain, logp, steps = sample_chain(self.policy, obs, self.k_steps, self.min_std)
        step = int(round(t_obs / self.dt))
        for i in range(self.n_envs):
            self.records.append({
                "env": i, "step": step,
                "obs": {k: (v[i:i + 1].clone() if torch.is_tensor(v) else [v[i]]) for k, v in obs.items()},
                "chain": chain[i].clone(), "logp": logp[i].clone(), "plan_steps": steps})
        latency = time.perf_counter() - start
        self.latencies.append(latency)
        return Chunk(actions=chunk.to("cpu", torch.float32).numpy(), t_obs=t_obs, dt=self.dt, latency_s=latency,
                     info={})


def sample_chain(policy: Any, obs: dict[str, Any], k_steps: int, min_std: float):
    """Sample a chunk with the last ``k_steps`` denoising steps stochastic. Returns the executed
    chunk (B, n_action_steps, A) raw, the chain latents (B, K+1, H, A) (input of the first
    stochastic step, then each step's output), their log-probabilities (B, K) and the plan indices
    of the K stochastic steps."""
    c = policy.config
    cond = policy.global_cond(obs)
    plan = policy.sampler.plan()
    K = min(int(k_steps), len(plan))
    first = len(plan) - K
    b = cond.shape[0]
    x = torch.randn(b, c.horizon, policy.features.action_dim, device=cond.device, dtype=cond.dtype)
    chain, logps = [], []
    for s in plan:
        t = torch.full((b,), s.t, device=cond.device, dtype=torch.long)
        mean = _chain_mean(policy, s, x, policy.unet(x, t, cond))
        if s.index >= first:
            if not chain:
                chain.append(x)
            std = max(float(s.sigma), min_std)
            x = mean + std * torch.randn_like(mean)
            chain.append(x)
            logps.append(_gaussian_logp(x, mean, std))
        else:
            x = mean
    start = c.n_obs_steps - 1
    chunk = policy.tokenizer.decode(x)[:, start:start + c.n_action_steps]
    return chunk, torch.stack(chain, 1), torch.stack(logps, 1), list(range(first, len(plan)))


def _cat_obs(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in rows[0]:
        out[k] = torch.cat([r[k] for r in rows]) if torch.is_tensor(rows[0][k]) else sum((r[k] for r in rows), [])
    return out


class DPPO:
    """method=dppo (see the module docstring)."""

    def __init__(self, cfg: RefineConfig, policy: torch.nn.Module):
        if getattr(policy, "registry_name", None) != "diffusion":
            raise ValueError(f"method=dppo refines Diffusion Policy; got {type(policy).__name__} "
                             f"(method=awr or method=filtered work for every family)")
        self.cfg, self.d = cfg, cfg.dppo

    def make_source(self, policy: torch.nn.Module, dt: float) -> Callable[[int], Any]:
        return lambda n: DPPOSource(policy, n, dt, self.d.k_steps, self.d.min_std)

    def update(self, policy: torch.nn.Module, rollouts: Rollouts, optimizer: torch.optim.Optimizer,
               demo: Any, generator: torch.Generator, device: torch.device) -> dict[str, float]:
        cfg, d = self.cfg, self.d
        r = step_rewards(rollouts.rewards, rollouts.length, rollouts.success, cfg.reward_weight, cfg.success_bonus)
        A = advantages(returns_to_go(r, cfg.gamma), rollouts.valid, rollouts.groups)
        # only the calls of undecided episodes count (later ones have no advantage)
        recs = [x for x in rollouts.records if x["step"] < rollouts.length[x["episode"]]]
        if not recs:
            return {"samples": 0.0, "updates": 0.0}
        plan = policy.sampler.plan()
        K = recs[0]["chain"].shape[0] - 1
        # one sample per (inference call, stochastic denoising step)
        rec_idx = np.repeat(np.arange(len(recs)), K)
        k_idx = np.tile(np.arange(K), len(recs))
        adv = torch.tensor([A[x["episode"], x["step"]] for x in recs], dtype=torch.float32, device=device)
        chains = torch.stack([x["chain"] for x in recs]).to(device)  # (N, K+1, H, A)
        logp_old = torch.stack([x["logp"] for x in recs]).to(device)  # (N, K)
        steps = recs[0]["plan_steps"]
        params = [p for p in policy.parameters() if p.requires_grad]
        n = len(rec_idx)
        info = {"samples": float(n), "updates": 0.0}
        pg_losses, bc_losses, clip_frac, kl = [], [], [], []
        policy.train()
        for _ in range(d.epochs):
            order = torch.randperm(n, generator=generator).numpy()
            for lo in range(0, n, d.minibatch):
                mb = order[lo:lo + d.minibatch]
                ri, ki = rec_idx[mb], k_idx[mb]
                obs = {k: (v.to(device) if torch.is_tensor(v) else v)
                       for k, v in _cat_obs([recs[i]["obs"] for i in ri]).items()}
                cond = policy.global_cond(obs)
                x_in = chains[ri, ki]
                x_out = chains[ri, ki + 1]
                logp_new = torch.empty(len(mb), device=device)
                for j in np.unique(ki):  # one sampler step (its coefficients) at a time
                    m = torch.from_numpy(np.flatnonzero(ki == j)).to(device)
                    s = plan[steps[j]]
                    t = torch.full((len(m),), s.t, device=device, dtype=torch.long)
                    mean = _chain_mean(policy, s, x_in[m], policy.unet(x_in[m], t, cond[m]))
                    logp_new = logp_new.index_put((m,), _gaussian_logp(x_out[m], mean, max(float(s.sigma), d.min_std)))
                ratio = torch.exp(logp_new - logp_old[ri, ki])
                a = adv[ri]
                pg = -torch.min(ratio * a, ratio.clamp(1 - d.clip_eps, 1 + d.clip_eps) * a).mean()
                update_step(with_bc(pg, policy, demo, cfg.bc_weight, bc_losses), optimizer, params, d.max_grad_norm, "dppo")
                pg_losses.append(float(pg.detach()))
                clip_frac.append(float(((ratio - 1).abs() > d.clip_eps).float().mean()))
                kl.append(float((logp_old[ri, ki] - logp_new).mean().detach()))
                info["updates"] += 1
        policy.eval()
        info.update(pg_loss=float(np.mean(pg_losses)), clip_fraction=float(np.mean(clip_frac)),
                    approx_kl=float(np.mean(kl)), bc_loss=float(np.mean(bc_losses)) if bc_losses else float("nan"))
        return info
