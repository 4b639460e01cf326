"""The per-slot-noise action buffer of Streaming Diffusion Policy (Høeg et al. 2024, after TEDi).

An action buffer of ``H`` slots is laid out as

    [ n_past slots | chunk 0 | chunk 1 | ... | chunk h-1 | tail ]
      (observed      (n_action slots each;                 (the H - n_past - h*n_action leftover
       frames before  chunk 0 = actions to execute now)      slots, which follow chunk h-1)
       the current)

and every slot carries its own integer noise *level* in ``0..K``. Level 0 is clean; level ``k >= 1``
is the diffusers timestep ``t_k = round(k T / K) - 1`` of the training schedule (diffusers'
"trailing" spacing, so level K is the noisiest timestep T-1). Stepping a slot from level k to k-1 is
the DDIM or DDPM update of ``DiffusionSampler`` from ``t_k`` to ``t_{k-1}`` (``t_0 = -1``: the last
step to the clean sample), with coefficients looked up per slot.

With ``s`` denoising steps per ``act`` and ``K = h * s`` levels, the buffer streams as follows:

* before the denoising of a call, chunk ``c`` sits at level ``(c + 1) s`` (the past slots share chunk
  0's level, the tail chunk h-1's): ``streaming_profile()``;
* ``s`` denoiser evaluations lower every slot by one level each, so chunk 0 reaches level 0 (clean,
  executed) and chunk ``c`` reaches ``c s``;
* ``advance`` drops the ``n_action`` executed slots (slot ``i + n_action`` moves to ``i`` keeping its
  level), refills the last chunk and the tail with fresh noise at level K, and forward-noises the past
  slots (now holding clean, executed actions) back to chunk 0's level: the profile again.

Training noise (``training_timesteps``) mixes the paper's two regimes per sample: *chunk-wise*
(chunk c at a timestep in ``(c T / h, (c + 1) T / h]``, one random offset per sample, which covers
every level the streaming steps visit for any ``s``) and *temporally constant* (one random timestep
for all slots: the cold start, where a pure-noise buffer is denoised as a whole).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler

from robopolicy.samplers.diffusion import SAMPLERS, DiffusionSampler

_COEFFS = ("sqrt_alpha", "sqrt_one_minus_alpha", "c_x0", "c_xt", "c_eps", "sigma")


@dataclass(frozen=True)
class BufferLayout:
    """How the horizon splits into past slots, chunks and a leftover tail."""

    horizon: int
    """Slots in the buffer (the policy's horizon)."""
    n_past: int
    """Slots before the current action (n_obs_steps - 1): context, never executed."""
    n_action: int
    """Slots executed per call (n_action_steps): the chunk size."""

    def __post_init__(self) -> None:
        if self.n_past < 0 or self.n_action < 1 or self.n_past + self.n_action > self.horizon:
            raise ValueError(
                f"buffer layout needs 0 <= n_past and 1 <= n_action with n_past + n_action <= horizon; got "
                f"n_past={self.n_past}, n_action={self.n_action}, horizon={self.horizon}"
            )

    @property
    def num_chunks(self) -> int:
        """Complete chunks after the past slots (h)."""
        return (self.horizon - self.n_past) // self.n_action

    @property
    def last_chunk_start(self) -> int:
        """First slot of chunk h-1; from here on ``advance`` refills with fresh noise."""
        return self.n_past + (self.num_chunks - 1) * self.n_action

    def chunk_of_slot(self) -> torch.Tensor:
        """(H,) long: the chunk each slot belongs to (past slots -> 0, tail slots -> h-1)."""
        i = torch.arange(self.horizon)
        return ((i - self.n_past).clamp_min(0) // self.n_action).clamp_max(self.num_chunks - 1)


class StreamingSchedule:
    """Per-slot noise levels, the per-slot DDIM/DDPM step, and the buffer's shift for one schedule.

    Pure math on tensors: the buffer and its levels are passed in and returned, never stored."""

    def __init__(self, sampler: DiffusionSampler, layout: BufferLayout, steps_per_act: int, method: str):
        if method not in SAMPLERS:
            raise ValueError(f"streaming sampler must be one of {SAMPLERS}, got {method!r}")
        if steps_per_act < 1:
            raise ValueError(f"steps_per_act must be >= 1, got {steps_per_act}")
        T = sampler.num_train_timesteps
        K = layout.num_chunks * steps_per_act
        if K > T:
            raise ValueError(
                f"{layout.num_chunks} chunks x {steps_per_act} steps per act = {K} noise levels exceed the "
                f"{T} training timesteps; lower steps_per_act or raise noise.num_train_timesteps"
            )
        self.sampler, self.layout, self.method = sampler, layout, method
        self.steps_per_act, self.num_levels = steps_per_act, K
        # diffusers' trailing grid, noisiest first: [T-1, ..., t_1]; level k <-> grid[K - k].
        grid = DDIMScheduler.from_config(sampler.schedulers["ddim"].config, timestep_spacing="trailing")
        grid.set_timesteps(K)
        t = torch.cat([torch.tensor([-1]), grid.timesteps.flip(0).to(torch.long)])  # (K+1,), t[0] = -1: clean
        self.level_timesteps = t
        """(K+1,) diffusers timestep of each level; -1 at level 0 (clean)."""
        # Coefficients of the step level k -> k-1, indexed by k (row 0 is unused: clean slots stay put).
        c = sampler.coefficients(t.clamp_min(0), torch.cat([t[:1], t[:-1]]), method)
        self._coef = {k: c[k] for k in _COEFFS}
        self._alpha_bar = torch.where(t >= 0, sampler.alphas_cumprod[t.clamp_min(0)], torch.ones(()))
        self.chunk_of_slot = layout.chunk_of_slot()

    # --- levels ------------------------------------------------------------------------------
    def streaming_profile(self) -> torch.Tensor:
        """(H,) levels at the start of a streaming call: chunk c at (c + 1) s."""
        return (self.chunk_of_slot + 1) * self.steps_per_act

    def executed_profile(self) -> torch.Tensor:
        """(H,) levels after a call's denoising: chunk c at c s (chunk 0 and the past slots clean)."""
        return self.chunk_of_slot * self.steps_per_act

    def timesteps(self, levels: torch.Tensor) -> torch.Tensor:
        """Denoiser input timesteps for per-slot levels (any shape); clean slots read as t = 0."""
        return self.level_timesteps.to(levels.device)[levels].clamp_min(0)

    def training_timesteps(self, batch_size: int, constant_prob: float, device: torch.device | str = "cpu") -> torch.Tensor:
        """(B, H) long training timesteps: chunk-wise increasing, or with probability
        ``constant_prob`` one timestep for every slot (per sample)."""
        T, h = self.sampler.num_train_timesteps, self.layout.num_chunks
        # Chunk c's band of timesteps ends at t((c+1) s) = round((c+1) T / h) - 1, as on the level grid.
        top = torch.round((self.chunk_of_slot.to(device) + 1) * (T / h)).long() - 1
        width = max(1, round(T / h))
        offset = torch.randint(0, width, (batch_size, 1), device=device)
        chunk_wise = (top.unsqueeze(0) - offset).clamp(0, T - 1)
        constant = torch.randint(0, T, (batch_size, 1), device=device).expand_as(chunk_wise)
        use_constant = (torch.rand(batch_size, 1, device=device) < constant_prob).expand_as(chunk_wise)
        return torch.where(use_constant, constant, chunk_wise)

    # --- the buffer --------------------------------------------------------------------------
    def _per_slot(self, name: str, levels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self._coef[name].to(like.device)[levels].to(like.dtype).unsqueeze(-1)

    def step(
        self, x: torch.Tensor, levels: torch.Tensor, model_out: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One denoising step of every slot from its level k to k-1 (``DiffusionSampler.step`` with
        per-slot coefficients); slots already at level 0 are returned unchanged. x (B, H, A),
        levels (B, H) long; ``noise`` like x is needed for DDPM."""
        cfg = self.sampler.config
        sa, s1a = self._per_slot("sqrt_alpha", levels, x), self._per_slot("sqrt_one_minus_alpha", levels, x)
        if cfg.prediction_type == "epsilon":
            eps = model_out
            x0 = (x - s1a * eps) / sa
        else:
            x0 = model_out
            eps = (x - sa * x0) / s1a
        if cfg.clip_sample:
            x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
        out = self._per_slot("c_x0", levels, x) * x0 + self._per_slot("c_xt", levels, x) * x + self._per_slot("c_eps", levels, x) * eps
        if self.method == "ddpm":
            if noise is None:
                raise ValueError("a DDPM streaming step needs noise")
            out = out + self._per_slot("sigma", levels, x) * noise
        moving = (levels > 0).unsqueeze(-1)
        return torch.where(moving, out, x), (levels - 1).clamp_min(0)

    def renoise(self, x0: torch.Tensor, levels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Forward process q(x_k | x0) per slot: clean values noised to ``levels`` (level 0 unchanged)."""
        a = self._alpha_bar.to(x0.device)[levels].to(x0.dtype).unsqueeze(-1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def shift(self, x: torch.Tensor, levels: torch.Tensor, fresh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drop the executed chunk: slot ``i + n_action`` moves to ``i`` with its level, and the last
        chunk plus the tail are refilled with ``fresh`` noise (B, H - last_chunk_start, A) at level K."""
        lay = self.layout
        keep = slice(lay.n_action, lay.n_past + lay.num_chunks * lay.n_action)
        n_fresh = lay.horizon - lay.last_chunk_start
        if fresh.shape != (x.shape[0], n_fresh, x.shape[2]):
            raise ValueError(f"fresh noise must have shape {(x.shape[0], n_fresh, x.shape[2])}, got {tuple(fresh.shape)}")
        new_levels = levels.new_full((levels.shape[0], n_fresh), self.num_levels)
        return torch.cat([x[:, keep], fresh], 1), torch.cat([levels[:, keep], new_levels], 1)

    def advance(self, x: torch.Tensor, levels: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """After a call: shift out the executed chunk, bring in fresh noise, and noise the past
        slots (clean executed actions) to chunk 0's level, restoring ``streaming_profile``."""
        done = self.layout.n_past + self.layout.n_action
        if (levels[:, :done] != 0).any():
            raise ValueError("advance: the past slots and the executed chunk must be denoised to level 0 first")
        n_fresh = self.layout.horizon - self.layout.last_chunk_start
        fresh = torch.randn(x.shape[0], n_fresh, x.shape[2], generator=generator, device=x.device, dtype=x.dtype)
        x, levels = self.shift(x, levels, fresh)
        p = self.layout.n_past
        if p:
            target = levels[:, p : p + 1].expand(-1, p)  # chunk 0's level
            noise = torch.randn(x.shape[0], p, x.shape[2], generator=generator, device=x.device, dtype=x.dtype)
            x = torch.cat([self.renoise(x[:, :p], target, noise), x[:, p:]], 1)
            levels = torch.cat([target, levels[:, p:]], 1)
        return x, levels
