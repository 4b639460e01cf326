"""PAD, Prediction with Action (Guo et al., NeurIPS 2024): one diffusion transformer that denoises
the future frame(s) and the action chunk together.

The DiT (``robopolicy/nn/dit.py``) reads one sequence

    [ observation tokens (context) | future-image tokens | action tokens ]

* observation tokens: the shared ObservationEncoder's tokens of the current observation (camera,
  state, the MiniLM instruction token), projected to d_model; they condition by attention and
  their (masked) mean also enters the adaLN vector, with the diffusion-timestep embedding;
* future-image tokens: the first camera's frames ``future_steps`` ahead, resized to
  ``image_size`` and scaled to [-1, 1], stacked on channels and cut into p x p patches (64 tokens at
  64 / 8); with ``condition_on_current_frame`` the current frame's pixels are stacked on the same
  channels (PAD's x_cond), so each patch token sees what it looks like now; fixed 2-D sin/cos
  positions;
* action tokens: one per step of the normalized chunk (horizon H), fixed 1-D sin/cos positions.

Training: ONE timestep per sample for both modalities, diffusers-scheduled noise on both, per
modality an adaLN output head, loss = image_loss_weight * image MSE + w(step) * action MSE, where
w ramps to lambda after ``action_loss_warmup_steps`` (over ``action_loss_ramp_steps``; the
official code switches it on at once). The step is the policy's own ``train_step`` buffer, counted
by ``loss`` in training mode (saved with the checkpoint, so a resumed run continues the ramp).
The action loss skips padded steps and action-free samples (``action_is_valid`` False: video-only
co-training data); the image loss skips future frames past the episode end.

Inference: the same DDIM (or DDPM) process over the packed image + action tokens from pure noise;
``act`` returns the chunk's ``n_action_steps`` actions from the current frame, ``predict`` also
the predicted frames. ``image_loss_weight=0`` (or no camera) drops the image tokens entirely.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robopolicy.encoders import ObservationEncoder, Tokens
from robopolicy.nn import AdaLNHead, DiT, TimestepEmbedding, patchify, sincos_2d, sinusoidal_embedding, unpatchify, zero_init_
from robopolicy.normalize import Normalizer
from robopolicy.policies.base import Policy, masked_mse
from robopolicy.policies.pad.config import PADConfig
from robopolicy.registry import register
from robopolicy.samplers import DiffusionSampler, StepCoefficients
from robopolicy.tokenizers import ActionTokenizer
from robopolicy.types import ACTION_VALID_KEY, Batch, FeatureSpec, Obs, PolicyState


@register("policy", "pad")
class PADPolicy(Policy):
    config_class = PADConfig
    config: PADConfig
    learns_from_action_free = True  # batches may hold video-only samples (ACTION_VALID_KEY False)

    def __init__(self, config: PADConfig, features: FeatureSpec, stats: dict[str, dict[str, Any]] | None):
        super().__init__(config, features, stats)
        c = config
        d = c.d_model
        self.normalizer = Normalizer.for_observations(features, c.normalization, stats)
        self.tokenizer = ActionTokenizer(c.action_tokenizer, c.horizon, features.action_dim, stats)
        self.encoder = ObservationEncoder(c.encoder, features, c.n_obs_steps)
        self.context_proj = nn.Identity() if c.encoder.token_dim == d else nn.Linear(c.encoder.token_dim, d)
        self.t_embed = TimestepEmbedding(d)
        self.obs_cond = nn.Linear(d, d)  # pooled observation tokens -> adaLN vector (added to the timestep's)
        self.dit = DiT(d, c.n_layers, c.n_heads, mlp_ratio=c.mlp_ratio, dropout=c.dropout, zero_init=c.adaln_zero_init)
        a = features.action_dim
        self.action_in = nn.Linear(a, d)
        self.register_buffer("action_pos", sinusoidal_embedding(torch.arange(c.horizon), d), persistent=False)
        self.action_head = AdaLNHead(d, a, d)
        heads = [self.action_head]

        # The predicted camera: the first one, unless the image loss is off (action-only ablation).
        self.camera: str | None = features.image_keys[0] if features.cameras and c.image_loss_weight > 0 else None
        self.n_future = len(c.future_steps)
        self.n_image_tokens = 0
        if self.camera is not None:
            self.channels = features.cameras[self.camera[len("observation.images."):]][0]
            grid = c.image_size // c.patch_size
            self.n_image_tokens = grid * grid
            self.image_token_dim = c.patch_size**2 * self.channels * self.n_future
            cond_dim = c.patch_size**2 * self.channels if c.condition_on_current_frame else 0
            self.image_in = nn.Linear(self.image_token_dim + cond_dim, d)
            self.register_buffer("image_pos", sincos_2d(d, grid, grid), persistent=False)
            self.image_head = AdaLNHead(d, self.image_token_dim, d)
            heads.append(self.image_head)
        if c.adaln_zero_init:
            for h in heads:
                zero_init_(h)
        self.sampler = DiffusionSampler(c.noise)
        # Training steps seen by loss() (drives the action-loss ramp); a buffer so checkpoints keep it.
        self.register_buffer("train_step", torch.zeros((), dtype=torch.long))
        self._masks: dict[tuple[int, str], torch.Tensor] = {}

    # --- data --------------------------------------------------------------------------------
    def delta_timestamps(self) -> dict[str, list[float]]:
        """The base windows, plus the predicted camera's future frames after its observed ones."""
        out = super().delta_timestamps()
        if self.camera is not None:
            out[self.camera] = out[self.camera] + [k / self.features.fps for k in self.config.future_steps]
        return out

    def _split(self, batch: Batch) -> tuple[Obs, torch.Tensor | None, torch.Tensor | None]:
        """(observation with n_obs_steps frames, future frames (B, F, C, H, W) or None, their
        padding (B, F) or None) of a training batch."""
        if self.camera is None:
            return batch, None, None
        c = self.config
        need = c.n_obs_steps + self.n_future
        frames = batch.get(self.camera)
        if not isinstance(frames, torch.Tensor) or frames.dim() != 5 or frames.shape[1] != need:
            got = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
            raise ValueError(
                f"PAD's training batch {self.camera!r} must hold n_obs_steps + len(future_steps) = {need} frames "
                f"(the window delta_timestamps() asks the dataset for), got shape {got}"
            )
        obs = dict(batch)
        obs[self.camera] = frames[:, : c.n_obs_steps]
        pad = batch.get(self.camera + "_is_pad")
        return obs, frames[:, c.n_obs_steps :], None if pad is None else pad[:, c.n_obs_steps :].to(torch.bool)

    def _pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, C, H, W) frames in [0, 1] -> (B, F*C, S, S) in [-1, 1] at the predicted size."""
        b, f, ch, h, w = frames.shape
        x = frames.reshape(b, f * ch, h, w).float()
        s = self.config.image_size
        if (h, w) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        return x * 2 - 1

    def frames_from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Image tokens (B, N, p*p*C*F) in [-1, 1] -> frames (B, F, C, S, S) in [0, 1]."""
        s, ch = self.config.image_size, self.channels
        img = unpatchify(tokens, self.config.patch_size, ch * self.n_future, s, s)
        return ((img.reshape(img.shape[0], self.n_future, ch, s, s) + 1) / 2).clamp(0, 1)

    # --- the network -------------------------------------------------------------------------
    def observation_context(self, obs: Obs) -> tuple[Tokens, torch.Tensor | None]:
        """Context tokens (d_model wide) of raw stacked observations, and the current frame's patch
        pixels (B, N, p*p*C) for ``condition_on_current_frame`` (else None): once per chunk."""
        t = self.encoder(self.normalizer.normalize_obs(obs))
        ctx = Tokens(x=self.context_proj(t.x), mask=t.mask, pooled=None)
        current = None
        if self.camera is not None and self.config.condition_on_current_frame:
            current = patchify(self._pixels(obs[self.camera][:, -1:]), self.config.patch_size)
        return ctx, current

    def _cond(self, ctx: Tokens, t: torch.Tensor, per_step: bool = False) -> torch.Tensor:
        """adaLN vector: timestep embedding + pooled observation tokens; t (B,) -> (B, D), or with
        ``per_step`` the S sampling timesteps (S,) -> (S, B, D)."""
        m = ctx.mask.unsqueeze(-1).to(ctx.x.dtype)
        pooled = self.obs_cond((ctx.x * m).sum(1) / m.sum(1).clamp_min(1.0))
        emb = self.t_embed(t)
        return emb.unsqueeze(1) + pooled if per_step else emb + pooled

    def _attn_mask(self, n_ctx: int, device: torch.device) -> torch.Tensor:
        """Attention over [context | image | action] (True = may attend): the observation tokens
        attend only to each other (the condition never depends on the noisy sample), and with
        ``block_image_to_action`` the image rows are blind to the action columns."""
        key = (n_ctx, str(device))
        if key not in self._masks:
            n_i, n = self.n_image_tokens, n_ctx + self.n_image_tokens + self.config.horizon
            mask = torch.ones(n, n, dtype=torch.bool, device=device)
            mask[:n_ctx, n_ctx:] = False
            if self.config.block_image_to_action:
                mask[n_ctx : n_ctx + n_i, n_ctx + n_i :] = False
            self._masks[key] = mask
        return self._masks[key]

    def denoise(self, ctx: Tokens, current: torch.Tensor | None, cond: torch.Tensor, noisy_actions: torch.Tensor,
                noisy_images: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One DiT evaluation: noisy (B, H, A) actions and (B, N, p*p*C*F) image tokens -> the
        predicted targets of both (epsilon or clean sample, as the schedule says)."""
        a = self.action_in(noisy_actions) + self.action_pos
        parts = [a]
        if self.camera is not None:
            img = noisy_images if current is None else torch.cat((noisy_images, current.to(noisy_images.dtype)), dim=-1)
            parts.insert(0, self.image_in(img) + self.image_pos)
        h = self.dit(torch.cat(parts, dim=1), cond, context=ctx.x, context_mask=ctx.mask,
                     attn_mask=self._attn_mask(ctx.x.shape[1], ctx.x.device))
        n_i = self.n_image_tokens
        pred_images = self.image_head(h[:, :n_i], cond) if self.camera is not None else None
        return self.action_head(h[:, n_i:], cond), pred_images

    # --- training ----------------------------------------------------------------------------
    def action_loss_scale(self, step: torch.Tensor) -> torch.Tensor:
        """w(step): 0 during the warm-up, then a linear ramp to lambda (a tensor: no host sync)."""
        c = self.config
        s = (step - c.action_loss_warmup_steps).to(torch.float32)
        if c.action_loss_ramp_steps:
            frac = ((s + 1) / c.action_loss_ramp_steps).clamp(0.0, 1.0)
        else:
            frac = (s >= 0).to(torch.float32)
        return c.action_loss_weight * frac

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        actions, pad = self.batch_actions(batch)
        obs, future, future_pad = self._split(batch)
        x0_a = self.tokenizer.encode(actions)
        b = x0_a.shape[0]
        valid = batch.get(ACTION_VALID_KEY)
        if valid is not None:
            valid = valid.to(device=x0_a.device, dtype=torch.bool).reshape(-1)
            if valid.shape[0] != b:
                raise ValueError(f"batch {ACTION_VALID_KEY!r} must have shape ({b},), got {tuple(batch[ACTION_VALID_KEY].shape)}")
            # Action-free samples: no loss on their action tokens, and a neutral clean value to noise.
            x0_a = torch.where(valid[:, None, None], x0_a, torch.zeros_like(x0_a))
            invalid = ~valid[:, None].expand(b, c.horizon)
            pad = invalid if pad is None else pad | invalid

        t = self.sampler.sample_timesteps((b,), device=x0_a.device)  # one timestep for both modalities
        noise_a = torch.randn_like(x0_a)
        noisy_a = self.sampler.add_noise(x0_a, noise_a, t)
        x0_i = noise_i = noisy_i = None
        if self.camera is not None:
            pixels = self._pixels(future)
            if future_pad is not None:  # frames past the episode end: no loss, and a neutral (grey) clean value
                keep = (~future_pad).repeat_interleave(self.channels, dim=1)[:, :, None, None].to(pixels.dtype)
                pixels = pixels * keep
            x0_i = patchify(pixels, c.patch_size)
            noise_i = torch.randn_like(x0_i)
            noisy_i = self.sampler.add_noise(x0_i, noise_i, t)

        ctx, current = self.observation_context(obs)
        pred_a, pred_i = self.denoise(ctx, current, self._cond(ctx, t), noisy_a, noisy_i)
        action_loss = masked_mse(pred_a, self.sampler.target(x0_a, noise_a), pad)
        scale = self.action_loss_scale(self.train_step)
        loss = scale * action_loss
        info = {"action_loss": float(action_loss.detach()), "action_weight": float(scale)}
        if self.camera is not None:
            # (B, N, p*p*F*C) -> (B, F, N*p*p*C): one row per predicted frame, so padding masks frames.
            def per_frame(x: torch.Tensor) -> torch.Tensor:
                return x.reshape(b, -1, self.n_future, self.channels).transpose(1, 2).reshape(b, self.n_future, -1)

            image_loss = masked_mse(per_frame(pred_i), per_frame(self.sampler.target(x0_i, noise_i)), future_pad)
            loss = loss + c.image_loss_weight * image_loss
            info["image_loss"] = float(image_loss.detach())
        if self.training:
            self.train_step += 1
        info["loss"] = float(loss.detach())
        return loss, info

    # --- inference ---------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(
        self,
        obs: Obs,
        sampler: str | None = None,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Jointly sample the whole chunk (B, horizon, A) in raw action units and the predicted
        future frames (B, len(future_steps), C, image_size, image_size) in [0, 1] (None when the
        image tokens are off); ``sampler``/``num_steps`` override the config's."""
        ctx, current = self.observation_context(obs)
        b, dev, dtype = ctx.x.shape[0], ctx.x.device, ctx.x.dtype
        plan = self.sampler.plan(sampler, num_steps)
        conds = self._cond(ctx, torch.tensor([s.t for s in plan], device=dev), per_step=True)  # every step's adaLN vector at once
        h, a = self.config.horizon, self.features.action_dim
        n_a = h * a
        img_shape = (b, self.n_image_tokens, self.image_token_dim) if self.camera is not None else None

        # Both modalities in one flat (B, H*A + N*P) sample: the sampler's update is elementwise.
        def denoise(x: torch.Tensor, s: StepCoefficients) -> torch.Tensor:
            noisy_i = x[:, n_a:].reshape(img_shape) if img_shape is not None else None
            pred_a, pred_i = self.denoise(ctx, current, conds[s.index], x[:, :n_a].reshape(b, h, a), noisy_i)
            return pred_a.flatten(1) if pred_i is None else torch.cat((pred_a.flatten(1), pred_i.flatten(1)), dim=1)

        size = n_a + (self.n_image_tokens * self.image_token_dim if img_shape is not None else 0)
        x = self.sampler.sample(denoise, (b, size), sampler=sampler, num_steps=num_steps, generator=generator,
                                device=dev, dtype=dtype)
        chunk = self.tokenizer.decode(x[:, :n_a].reshape(b, h, a))
        frames = self.frames_from_tokens(x[:, n_a:].reshape(img_shape)) if img_shape is not None else None
        return chunk, frames

    def act(self, obs: Obs, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        c = self.config
        chunk, _ = self.predict(obs)
        start = c.n_obs_steps - 1  # the chunk starts at the oldest observed frame
        info = {"denoiser_evals": len(self.sampler.plan())}
        return chunk[:, start : start + c.n_action_steps], PolicyState(step=state.step + 1, info=info)
