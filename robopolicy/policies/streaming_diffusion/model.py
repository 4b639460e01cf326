"""Streaming Diffusion Policy (Høeg et al. 2024, arXiv 2406.04806).

The network is Diffusion Policy's (same observation encoder, normalizer, action tokenizer and
FiLM-conditioned UNet); what changes is that every action slot of the horizon carries its own
noise level, fed to the UNet as a per-slot timestep ``(B, H)``.

Training: normalize the action chunk and noise slot ``i`` at timestep ``t_i``, where the timesteps
are either chunk-wise increasing along the horizon (the streaming case) or one value for all slots
(the cold start), drawn per sample (``StreamingSchedule.training_timesteps``). The UNet regresses
the noise (or the clean chunk); squared error over the non-padded actions.

Inference keeps a buffer of partially denoised actions in ``PolicyState.tensors``:

    "buffer"  (B, H, A)  normalized actions, slot i at noise level levels[:, i]
    "levels"  (B, H)     integer noise levels, 0 = clean (see robopolicy/samplers/streaming.py)

Each ``act`` call (1) encodes the observation once, (2) runs ``steps_per_act`` denoiser
evaluations, each lowering every slot by one level, which brings the current chunk to level 0,
(3) returns that chunk in raw units, and (4) advances the buffer: executed slots drop out, fresh
noise enters at the end, and the state returned is ready for the next observation. The first call
after ``init_state`` (an empty buffer) denoises pure noise as a whole over all K levels, then
noises the result back to the streaming profile (the paper's "denoise" buffer initialization).
"""

from __future__ import annotations

from typing import Any

import torch

from robopolicy.policies.diffusion.model import DiffusionPolicy
from robopolicy.policies.streaming_diffusion.config import SDPConfig
from robopolicy.registry import register
from robopolicy.samplers.streaming import StreamingSchedule
from robopolicy.types import FeatureSpec, Obs, PolicyState

BUFFER, LEVELS = "buffer", "levels"


@register("policy", "sdp")
class StreamingDiffusionPolicy(DiffusionPolicy):
    config_class = SDPConfig
    config: SDPConfig

    def __init__(self, config: SDPConfig, features: FeatureSpec, stats: dict[str, dict[str, Any]] | None):
        super().__init__(config, features, stats)  # encoder, normalizer, tokenizer, UNet, noise schedule
        self.stream = StreamingSchedule(self.sampler, config.layout(), config.steps_per_act, config.noise.sampler)

    # --- training ----------------------------------------------------------------------------
    def training_timesteps(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """Per-slot timesteps (B, H): the paper's chunk-wise increasing noise bands, or (with
        probability ``constant_noise_prob``) one level for every slot, so that the network learns
        both the streaming buffer and the cold start. The loss itself is Diffusion Policy's."""
        return self.stream.training_timesteps(batch_size, self.config.constant_noise_prob, device=device)

    # --- inference ---------------------------------------------------------------------------
    def init_state(self, batch_size: int) -> PolicyState:
        """An empty buffer: the next ``act`` cold-starts it."""
        return PolicyState()

    def _checked_buffer(self, state: PolicyState, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        c, a = self.config, self.features.action_dim
        x, levels = state.tensors.get(BUFFER), state.tensors.get(LEVELS)
        if x is None or levels is None:
            raise ValueError(f"PolicyState.tensors must hold both {BUFFER!r} and {LEVELS!r} (or neither, to cold-start)")
        if x.shape != (batch_size, c.horizon, a) or levels.shape != (batch_size, c.horizon):
            raise ValueError(
                f"PolicyState.tensors[{BUFFER!r}] {tuple(x.shape)} / [{LEVELS!r}] {tuple(levels.shape)} do not match "
                f"batch {batch_size}, horizon {c.horizon}, action dim {a}: reset with init_state({batch_size})"
            )
        if not torch.equal(levels, self.stream.streaming_profile().to(levels.device).expand_as(levels)):
            raise ValueError(f"PolicyState.tensors[{LEVELS!r}] is not this policy's streaming profile: reset with init_state")
        return x, levels

    @torch.inference_mode()
    def act(self, obs: Obs, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        c, stream = self.config, self.stream
        cond = self.global_cond(obs)
        b = cond.shape[0]
        unet = self._unet_for_sampling()
        film_global = self.unet.film_global(cond)  # once per call, shared by every evaluation

        def denoise(x: torch.Tensor, levels: torch.Tensor, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
            for _ in range(n_steps):
                film = self.unet.combine_film(self.unet.film_timestep(stream.timesteps(levels)), film_global)
                out = unet(x, film=film)
                noise = torch.randn_like(x) if stream.method == "ddpm" else None
                x, levels = stream.step(x, levels, out, noise)
            return x, levels

        if state.tensors:
            x, levels = self._checked_buffer(state, b)
            x, levels = denoise(x, levels, c.steps_per_act)
            evals = c.steps_per_act
        else:
            # Cold start: the whole buffer from pure noise at the top level, down to clean; then
            # every chunk c > 0 is noised back to the level c * s it would have after a streaming call.
            shape = (b, c.horizon, self.features.action_dim)
            x = torch.randn(shape, device=cond.device, dtype=cond.dtype)
            full = torch.full(shape[:2], stream.num_levels, device=cond.device, dtype=torch.long)
            x, _ = denoise(x, full, stream.num_levels)
            levels = stream.executed_profile().to(cond.device).expand(b, -1)
            x = stream.renoise(x, levels, torch.randn_like(x))
            evals = stream.num_levels

        start = c.n_obs_steps - 1  # the current chunk follows the past slots
        actions = self.tokenizer.decode(x[:, start : start + c.n_action_steps])
        x, levels = stream.advance(x, levels)
        info = {"denoiser_evals": evals}
        return actions, PolicyState(tensors={BUFFER: x, LEVELS: levels}, step=state.step + 1, info=info)
