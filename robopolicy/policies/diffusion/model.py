"""Diffusion Policy (Chi et al. 2023), the reference every other family is measured against.

Training: normalize the action chunk, add diffusers-scheduled noise at a random timestep per
sample, and regress the noise (or the clean chunk) with a UNet FiLM-conditioned on the encoder's
pooled observation vector; squared error averaged over the non-padded actions.

Inference: sample a chunk by DDIM (default 10 steps) or DDPM from pure noise, unnormalize, and
return the ``n_action_steps`` actions starting at the current (newest observed) frame. The global
condition and all steps' timestep embeddings are computed once per chunk, so each step costs one
UNet trunk evaluation.
"""

from __future__ import annotations

from typing import Any

import torch

from robopolicy.encoders import ObservationEncoder
from robopolicy.nn import ConditionalUnet1D
from robopolicy.normalize import Normalizer
from robopolicy.policies.base import Policy, masked_mse
from robopolicy.policies.diffusion.config import DiffusionConfig
from robopolicy.registry import register
from robopolicy.samplers import DiffusionSampler, StepCoefficients
from robopolicy.tokenizers import ActionTokenizer
from robopolicy.types import Batch, FeatureSpec, Obs, PolicyState


@register("policy", "diffusion")
class DiffusionPolicy(Policy):
    config_class = DiffusionConfig
    config: DiffusionConfig

    def __init__(self, config: DiffusionConfig, features: FeatureSpec, stats: dict[str, dict[str, Any]] | None):
        super().__init__(config, features, stats)
        if not config.encoder.use_pooled:
            raise ValueError("Diffusion Policy conditions on the pooled vector: encoder.use_pooled must be True")
        self.normalizer = Normalizer.for_observations(features, config.normalization, stats)
        self.tokenizer = ActionTokenizer(config.action_tokenizer, config.horizon, features.action_dim, stats)
        self.encoder = ObservationEncoder(config.encoder, features, config.n_obs_steps)
        self.unet = ConditionalUnet1D(
            features.action_dim,
            self.encoder.pooled_dim,
            down_dims=config.down_dims,
            kernel_size=config.kernel_size,
            n_groups=config.n_groups,
            step_embed_dim=config.step_embed_dim,
            film_scale=config.film_scale,
        )
        self.sampler = DiffusionSampler(config.noise)
        self._compiled: dict[str, Any] = {}  # a plain dict: a compiled module must not join the state_dict

    # --- shared pieces -----------------------------------------------------------------------
    def global_cond(self, obs: Obs) -> torch.Tensor:
        """(B, pooled_dim) observation condition from raw (unnormalized) stacked observations."""
        return self.encoder(self.normalizer.normalize_obs(obs)).pooled

    def _unet_for_sampling(self):
        if not self.config.compile_unet:
            return self.unet
        if "unet" not in self._compiled:
            self._compiled["unet"] = torch.compile(self.unet, dynamic=False, mode=self.config.compile_mode)
        return self._compiled["unet"]

    # --- training ----------------------------------------------------------------------------
    def training_timesteps(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """One diffusion timestep per sample, (B,). Streaming diffusion overrides this with one
        per action slot, (B, H); the rest of the loss is shared."""
        return self.sampler.sample_timesteps((batch_size,), device=device)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        actions, pad = self.batch_actions(batch)
        x0 = self.tokenizer.encode(actions)
        b = x0.shape[0]
        noise = torch.randn_like(x0)
        t = self.training_timesteps(b, x0.device)
        noisy = self.sampler.add_noise(x0, noise, t)
        pred = self.unet(noisy, t, self.global_cond(batch))
        loss = masked_mse(pred, self.sampler.target(x0, noise), pad)
        return loss, {"loss": float(loss.detach())}

    # --- inference ---------------------------------------------------------------------------
    @torch.inference_mode()
    def sample_chunk(
        self,
        obs: Obs,
        sampler: str | None = None,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The whole sampled chunk (B, horizon, A) in raw action units; ``sampler``/``num_steps``
        override the config's inference sampler (ddim | ddpm) and step count."""
        cond = self.global_cond(obs)
        unet = self._unet_for_sampling()
        plan = self.sampler.plan(sampler, num_steps)
        ts = torch.tensor([s.t for s in plan], device=cond.device)
        # Every step's FiLM vectors at once: (steps, B, F).
        films = self.unet.film_timestep(ts).unsqueeze(1) + self.unet.film_global(cond).unsqueeze(0)

        def denoise(x: torch.Tensor, s: StepCoefficients) -> torch.Tensor:
            return unet(x, film=films[s.index])

        shape = (cond.shape[0], self.config.horizon, self.features.action_dim)
        x = self.sampler.sample(
            denoise, shape, sampler=sampler, num_steps=num_steps, generator=generator, device=cond.device, dtype=cond.dtype
        )
        return self.tokenizer.decode(x)

    def act(self, obs: Obs, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        c = self.config
        chunk = self.sample_chunk(obs)
        start = c.n_obs_steps - 1  # the chunk starts at the oldest observed frame
        info = {"denoiser_evals": len(self.sampler.plan())}
        return chunk[:, start : start + c.n_action_steps], PolicyState(step=state.step + 1, info=info)
