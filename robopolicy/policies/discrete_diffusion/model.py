"""Discrete Diffusion VLA (Liang et al. 2025, arXiv 2508.20072).

One transformer reads a single sequence

    [ observation tokens | action tokens ]

* observation tokens: the shared ObservationEncoder's tokens (per camera and observed step, a
  state token per step, one token for the MiniLM embedding of the instruction), projected to
  d_model when ``encoder.token_dim`` differs;
* action tokens: the action chunk (horizon H x action dims A) as L = H*A discrete tokens from the
  shared ActionTokenizer (n_bins uniform bins per dimension over q01..q99), time-major, each
  embedded with a learned table of n_bins + 1 rows (the last row is [MASK]) plus a learned
  position embedding. Attention is bidirectional everywhere; a linear head maps each action
  position's output to n_bins logits.

Training (masked discrete diffusion): tokenize the chunk, mask a random subset of the action
tokens per sample (the fraction drawn from the mask schedule, ``samplers/masked.py``), and take
the cross-entropy of the head's logits against the true tokens on the masked, non-padded
positions. Optionally (``own_prediction_prob``), some samples see part of their visible tokens
replaced by the model's own no-grad predictions, as at decoding time, and that loss covers those
positions too (``samplers/masked.py``: ``own_prediction_inputs``).

Secondary remasking reads the model's output at committed (visible) positions, which the masked
loss alone never trains (its outputs there are whatever the network happens to produce). So a
share ``random_token_prob`` of the remaining visible tokens is replaced by uniformly random bins,
and ``visible_loss_weight`` x the cross-entropy on all remaining visible positions (true or
corrupted) is added: the model learns to give a committed token a high probability where it fits
the context and a low one where it does not, which is the score remasking thresholds.

    loss = CE(masked and own-guessed positions) + visible_loss_weight * CE(other visible positions)

Inference (``act``): encode the observation once, then decode the L tokens from all-[MASK]:
``parallel`` mode runs ``decode_rounds`` evaluations, committing the highest-scoring tokens first
(``decode_score``: confidence, or the top-1 minus top-2 confidence gap) along the cosine schedule
and re-masking committed tokens whose score falls below ``remask_threshold`` or has dropped by more
than ``remask_drop`` since they were committed; ``autoregressive`` mode is the left-to-right baseline of the same model (one
token per evaluation, L evaluations). Tokens decode to bin centers in raw units; the chunk's
``n_action_steps`` actions from the current frame are returned. ``state.info["decoder_evals"]``
counts the transformer forward passes; nothing is carried between calls.

Backbone: ``scratch`` (a stack of the shared TransformerBlock) or a local ``transformers`` model
folder, fed ``inputs_embeds`` through a linear projection; its pretrained weights are read when the
policy is built from dataset stats and come from the checkpoint when it is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robopolicy.encoders import ObservationEncoder, Tokens
from robopolicy.nn import TransformerEncoder, attention_mask
from robopolicy.normalize import Normalizer
from robopolicy.policies.base import Policy
from robopolicy.policies.discrete_diffusion.config import DDVLAConfig
from robopolicy.registry import register
from robopolicy.samplers.masked import (
    decode_autoregressive,
    decode_parallel,
    own_prediction_inputs,
    random_token_inputs,
    training_mask,
)
from robopolicy.tokenizers import ActionTokenizer
from robopolicy.types import Batch, FeatureSpec, Obs, PolicyState



class ScratchBackbone(nn.Module):
    """The shared transformer stack, trained from scratch: (B, N, D), (B, N) valid -> (B, N, D)."""

    def __init__(self, c: DDVLAConfig):
        super().__init__()
        self.out_dim = c.d_model
        self.transformer = TransformerEncoder(c.d_model, c.n_layers, c.n_heads, c.mlp_ratio, c.dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.transformer(x, None if bool(valid.all()) else attention_mask(valid))


class PretrainedBackbone(nn.Module):
    """A local ``transformers`` model (e.g. a BERT or Llama folder written by ``save_pretrained``)
    fed ``inputs_embeds`` through a linear projection from d_model to its hidden size."""

    def __init__(self, c: DDVLAConfig, load_weights: bool):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        path = Path(c.backbone)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"backbone {c.backbone!r}: no config.json there; expected 'scratch' or a local "
                                    "transformers model folder (save_pretrained); nothing is downloaded")
        if load_weights:
            self.model = AutoModel.from_pretrained(path, local_files_only=True)
        else:  # the checkpoint about to be loaded holds every weight
            self.model = AutoModel.from_config(AutoConfig.from_pretrained(path, local_files_only=True))
        self.out_dim = int(self.model.config.hidden_size)
        self.proj_in = nn.Linear(c.d_model, self.out_dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # An explicit 4-D boolean mask (True = may attend): decoder-only models (Llama, GPT-2)
        # would otherwise attend causally, and action tokens must see each other both ways.
        n = valid.shape[1]
        mask = valid[:, None, None, :].expand(-1, 1, n, -1)
        return self.model(inputs_embeds=self.proj_in(x), attention_mask=mask).last_hidden_state


@register("policy", "ddvla")
class DDVLAPolicy(Policy):
    config_class = DDVLAConfig
    config: DDVLAConfig

    def __init__(self, config: DDVLAConfig, features: FeatureSpec, stats: dict[str, dict[str, Any]] | None):
        super().__init__(config, features, stats)
        c = config
        self.normalizer = Normalizer.for_observations(features, c.normalization, stats)
        self.tokenizer = ActionTokenizer(c.action_tokenizer, c.horizon, features.action_dim, stats)
        self.encoder = ObservationEncoder(c.encoder, features, c.n_obs_steps)
        self.prefix_proj = nn.Identity() if c.encoder.token_dim == c.d_model else nn.Linear(c.encoder.token_dim, c.d_model)
        self.n_tokens = c.horizon * features.action_dim  # L
        self.n_bins = c.action_tokenizer.n_bins  # V
        self.mask_id = self.n_bins  # the extra embedding row
        self.token_embed = nn.Embedding(self.n_bins + 1, c.d_model)
        self.action_pos = nn.Parameter(torch.randn(self.n_tokens, c.d_model) * 0.02)
        if c.backbone == "scratch":
            self.backbone: nn.Module = ScratchBackbone(c)
        else:
            self.backbone = PretrainedBackbone(c, load_weights=stats is not None)
        self.head = nn.Linear(self.backbone.out_dim, self.n_bins)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        self._check_rounds()

    def _check_rounds(self) -> None:
        if self.config.decode_rounds > self.n_tokens:
            raise ValueError(f"decode_rounds {self.config.decode_rounds} exceeds the {self.n_tokens} action tokens "
                             f"(horizon {self.config.horizon} x action dim {self.features.action_dim})")

    # --- the network -------------------------------------------------------------------------
    def observation_tokens(self, obs: Obs) -> Tokens:
        """(B, N, d_model) tokens of raw (unnormalized) stacked observations: once per ``act``."""
        t = self.encoder(self.normalizer.normalize_obs(obs))
        return Tokens(x=self.prefix_proj(t.x), mask=t.mask, pooled=None)

    def action_logits(self, prefix: Tokens, tokens: torch.Tensor) -> torch.Tensor:
        """One decoder evaluation: (B, L) action tokens (``mask_id`` where masked) -> (B, L, V)."""
        a = self.token_embed(tokens) + self.action_pos
        x = torch.cat((prefix.x, a.to(prefix.x.dtype)), dim=1)
        valid = torch.cat((prefix.mask, torch.ones(tokens.shape, dtype=torch.bool, device=tokens.device)), dim=1)
        h = self.backbone(x, valid)
        return self.head(h[:, -self.n_tokens :])

    # --- training ----------------------------------------------------------------------------
    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        actions, pad = self.batch_actions(batch)
        target = self.tokenizer.encode(actions)  # (B, L) long
        b = target.shape[0]
        masked = training_mask(b, self.n_tokens, c.mask_schedule, device=target.device)
        prefix = self.observation_tokens(batch)
        detached = Tokens(x=prefix.x.detach(), mask=prefix.mask, pooled=None)
        tokens, predict = own_prediction_inputs(
            lambda t: self.action_logits(detached, t), target, masked, self.mask_id, c.own_prediction_prob
        )
        tokens, noised = random_token_inputs(tokens, predict, self.n_bins, c.random_token_prob)
        logits = self.action_logits(prefix, tokens)
        ce = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), reduction="none").view(b, -1)
        real = torch.ones_like(predict)
        if pad is not None:  # a padded step pads all of its A tokens
            real = ~pad.repeat_interleave(self.features.action_dim, dim=1)
        w_main = (predict & real).to(ce.dtype)
        loss = (ce * w_main).sum() / w_main.sum().clamp_min(1.0)
        info = {}
        w_vis = (~predict & real).to(ce.dtype)
        if c.visible_loss_weight > 0:
            vis_loss = (ce * w_vis).sum() / w_vis.sum().clamp_min(1.0)
            loss = loss + c.visible_loss_weight * vis_loss
            info["visible_loss"] = float(vis_loss.detach())
        with torch.no_grad():
            hit = (logits.argmax(-1) == target).to(ce.dtype)
            acc = (hit * w_main).sum() / w_main.sum().clamp_min(1.0)
            if c.random_token_prob > 0:  # how often a corrupted visible token is put right
                w_noise = (noised & real).to(ce.dtype)
                info["noised_fix_acc"] = float((hit * w_noise).sum() / w_noise.sum().clamp_min(1.0))
        info.update({"loss": float(loss.detach()), "masked_acc": float(acc), "mask_ratio": float(masked.float().mean()),
                     "own_ratio": float((predict & ~masked).float().mean())})
        return loss, info

    # --- inference ---------------------------------------------------------------------------
    @torch.inference_mode()
    def sample_tokens(self, obs: Obs) -> tuple[torch.Tensor, dict[str, Any]]:
        """(B, L) decoded action tokens and diagnostics, with the config's decoding settings."""
        c = self.config
        self._check_rounds()
        prefix = self.observation_tokens(obs)  # once, shared by every round

        def logits_fn(tokens: torch.Tensor) -> torch.Tensor:
            return self.action_logits(prefix, tokens)

        b, dev = prefix.x.shape[0], prefix.x.device
        if c.decode_mode == "autoregressive":
            tokens, trace = decode_autoregressive(logits_fn, b, self.n_tokens, self.mask_id, c.temperature, device=dev)
        else:
            tokens, trace = decode_parallel(
                logits_fn, b, self.n_tokens, self.mask_id, rounds=c.decode_rounds, schedule=c.mask_schedule,
                remask=c.remask, remask_threshold=c.remask_threshold, temperature=c.temperature, device=dev,
                score=c.decode_score, remask_drop=c.remask_drop,
            )
        return tokens, {"decoder_evals": trace.evals, "remasked": sum(trace.remasked)}

    def sample_chunk(self, obs: Obs) -> torch.Tensor:
        """The whole decoded chunk (B, horizon, A) in raw action units (bin centers)."""
        return self.tokenizer.decode(self.sample_tokens(obs)[0])

    def act(self, obs: Obs, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        c = self.config
        tokens, info = self.sample_tokens(obs)
        chunk = self.tokenizer.decode(tokens)
        start = c.n_obs_steps - 1  # the chunk starts at the oldest observed frame
        return chunk[:, start : start + c.n_action_steps], PolicyState(step=state.step + 1, info=info)

