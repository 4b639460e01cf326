"""EBT-Policy (Davies et al. 2025, arXiv 2510.27545): an Energy-Based Transformer (Gladstone et al.
2025, arXiv 2507.02092) as a robot policy.

The energy. The shared ObservationEncoder turns the stacked observations into tokens ``o`` (B, N, D)
once per call. A candidate chunk ``y`` (B, H, A) of normalized actions becomes H / P tokens
``W_in y_j + p_j``, each holding P = ``action_patch`` consecutive actions ``y_j`` (learned token
embeddings ``p``; P = 4 makes the unrolled training ~3x cheaper than one token per action with
16-step chunks). One sequence ``[o; y-tokens]`` goes through the
project's TransformerEncoder (bidirectional self-attention), and every action token's output is
mapped to a scalar by a bias-free linear head; their sum is the energy

    E(o, y) = sum_j w . T([o; W_in y + p])_{N + j}                (B,); lower = more compatible

(bias-free because only energy differences move the descent; per-token sums as in EBT).

Inference. Actions are the end point of a few gradient steps on E with respect to y:

    y_{k+1} = y_k - a * dE/dy (o, y_k)

from ``y_0`` = pure noise, or (warm start) the previous call's chunk shifted by the
``n_action_steps`` actions executed since, its last action held to fill the end. The step size
``a = exp(c * s)`` is learned (``c = step_size_lr_scale`` gives the log step size a larger
effective learning rate). The descent is adaptive (``robopolicy.samplers.energy.descend``): an
element stops once it has converged (its last step moved the chunk by at most ``stop_tol``, RMS in
normalized action units: the energy has stopped falling), or after ``inference_steps`` steps if
its energy is at or below ``energy_threshold``; while it stays above, it keeps descending up to
``max_inference_steps``. (A tolerance on the energy's own decrease stops too soon: near a minimum
the energy is flat to first order while the chunk still moves, see ``descend``.) The threshold is
the ``energy_quantile`` of the final-iterate energies of the training descent, a buffer saved in the
checkpoint (``inf`` until trained: then it never extends): during training a running quantile
(momentum ``energy_momentum``) of the live weights' energies; for the EMA weights that are
evaluated and saved, ``calibrate`` recomputes it with those weights on a few training batches.
The final energy is the policy's uncertainty: ``state.info["uncertainty"]`` (B,), with
``state.info["energy_steps"]`` (most steps any element used) and ``["compute_steps"]`` (B,), which
the evaluator averages.

Training unrolls that optimization and supervises its iterates against the demonstration chunk
``x`` (normalized, padded slots masked out):

    y_0 ~ N(0, I)  (or, with probability warm_start_prob, a simulated warm start:
                    x with its last n_action_steps slots holding x[H-k-1], plus noise)
    K ~ U{train_steps .. train_steps_max};  a_b = a * j^u, u ~ U(-1, 1)  (per sample)
    y_{k+1} = y_k - a_b * dE/dy (o, y_k + s z)         (Langevin noise s z on the gradient point)
    loss = mean_k ||y_k - x||^2  (k = 1..K; or only y_K)

``torch.autograd.grad(..., create_graph=True)`` keeps each gradient in the graph, so the loss
reaches the energy's parameters through dE/dy (second-order gradients), the step size through
``a``, and (unless ``detach_between_steps``) every earlier step through the iterates.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from robopolicy.encoders import ObservationEncoder
from robopolicy.nn import TransformerEncoder, attention_mask
from robopolicy.normalize import Normalizer
from robopolicy.policies.base import Policy, masked_mse
from robopolicy.policies.ebt.config import EBTConfig
from robopolicy.registry import register
from robopolicy.samplers.energy import Descent, EnergyFn, descend, unroll
from robopolicy.tokenizers import ActionTokenizer
from robopolicy.types import Batch, FeatureSpec, Obs, PolicyState

CHUNK = "chunk"


@register("policy", "ebt")
class EBTPolicy(Policy):
    config_class = EBTConfig
    config: EBTConfig

    def __init__(self, config: EBTConfig, features: FeatureSpec, stats: dict[str, dict[str, Any]] | None):
        super().__init__(config, features, stats)
        c, a_dim = config, features.action_dim
        self.normalizer = Normalizer.for_observations(features, c.normalization, stats)
        self.tokenizer = ActionTokenizer(c.action_tokenizer, c.horizon, a_dim, stats)
        self.encoder = ObservationEncoder(c.encoder, features, c.n_obs_steps)
        # One token per ``action_patch`` consecutive actions: fewer tokens, much cheaper unrolls.
        self.action_in = nn.Linear(c.action_patch * a_dim, c.dim)
        self.action_pos = nn.Parameter(torch.randn(c.horizon // c.action_patch, c.dim) * 0.02)
        self.transformer = TransformerEncoder(c.dim, c.depth, c.n_heads, c.mlp_ratio, c.dropout)
        # A bias in the last LayerNorm would only add a constant to E: no gradient could train it.
        self.transformer.norm = nn.LayerNorm(c.dim, bias=False)
        self.energy_head = nn.Linear(c.dim, 1, bias=False)
        self.log_step = nn.Parameter(torch.tensor(math.log(c.step_size_init) / c.step_size_lr_scale))
        # Adaptive-inference threshold: quantile of final training energies (inf = uncalibrated).
        self.register_buffer("energy_threshold", torch.tensor(math.inf))
        self.register_buffer("energy_calibrations", torch.tensor(0, dtype=torch.long))

    # --- the energy --------------------------------------------------------------------------
    def step_size(self) -> torch.Tensor:
        """The learned descent step size a (scalar)."""
        return torch.exp(self.config.step_size_lr_scale * self.log_step)

    def observation_tokens(self, obs: Obs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Observation tokens (B, N, D) and the attention mask of the joint sequence (None = all valid)."""
        tokens = self.encoder(self.normalizer.normalize_obs(obs))
        mask = None
        if not bool(tokens.mask.all()):
            b = tokens.mask.shape[0]
            valid = torch.cat((tokens.mask, tokens.mask.new_ones(b, self.config.horizon // self.config.action_patch)), dim=1)
            mask = attention_mask(valid)
        return tokens.x, mask

    def energy(self, obs_tokens: torch.Tensor, y: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """E(o, y): (B,) energy of normalized chunks ``y`` (B, H, A) given observation tokens."""
        n = obs_tokens.shape[1]
        patches = y.reshape(y.shape[0], -1, self.config.action_patch * y.shape[-1])  # (B, H / patch, patch * A)
        seq = torch.cat((obs_tokens, self.action_in(patches) + self.action_pos), dim=1)
        h = self.transformer(seq, attn_mask)[:, n:]
        return self.energy_head(h).squeeze(-1).sum(-1)

    def energy_fn(self, obs_tokens: torch.Tensor, attn_mask: torch.Tensor | None = None) -> EnergyFn:
        return lambda y: self.energy(obs_tokens, y, attn_mask)

    # --- training ----------------------------------------------------------------------------
    def initial_chunks(self, target: torch.Tensor) -> torch.Tensor:
        """Training starts: pure noise, or (prob. ``warm_start_prob``) the demonstration as the
        shifted previous chunk would show it: its last ``n_action_steps`` slots holding the action
        before them (nothing was predicted there), plus ``warm_start_noise`` noise."""
        c = self.config
        noise = torch.randn_like(target)
        if c.warm_start_prob <= 0:
            return noise
        keep = c.horizon - c.n_action_steps
        held = target[:, keep - 1 : keep].expand(-1, c.n_action_steps, -1)
        warm = torch.cat((target[:, :keep], held), dim=1) + c.warm_start_noise * torch.randn_like(target)
        use_warm = torch.rand(target.shape[0], 1, 1, device=target.device) < c.warm_start_prob
        return torch.where(use_warm, warm, noise)

    def _training_descent(self, batch: Batch, create_graph: bool):
        """The training unroll from ``initial_chunks`` (random step count and per-sample step size):
        (its iterates and energies, the normalized target, its padding, the observation tokens and
        attention mask). ``create_graph=False`` keeps no graph into the parameters (calibration)."""
        c = self.config
        actions, pad = self.batch_actions(batch)
        target = self.tokenizer.encode(actions)
        obs_tokens, attn_mask = self.observation_tokens(batch)
        b = target.shape[0]
        num_steps = int(torch.randint(c.train_steps, c.train_steps_max + 1, ()))
        jitter = math.log(c.step_size_jitter) * (2 * torch.rand(b, 1, 1, device=target.device) - 1)
        step = self.step_size() * torch.exp(jitter)  # (B, 1, 1)
        # The fused attention kernels have no double backward; the math kernel does.
        with sdpa_kernel(SDPBackend.MATH):
            out = unroll(
                self.energy_fn(obs_tokens, attn_mask), self.initial_chunks(target), step, num_steps,
                noise_std=c.langevin_noise, detach_between_steps=c.detach_between_steps,
                create_graph=create_graph,
            )
        return out, target, pad, obs_tokens, attn_mask

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        out, target, pad, obs_tokens, attn_mask = self._training_descent(batch, create_graph=True)
        errors = [masked_mse(y, target, pad) for y in out.iterates]
        loss = torch.stack(errors).mean() if c.loss_on_all_steps else errors[-1]

        final_energy = self._track_threshold(obs_tokens, out.iterates[-1], attn_mask)
        info = {
            "loss": float(loss.detach()),
            "mse_first_step": float(errors[0].detach()),
            "mse_last_step": float(errors[-1].detach()),
            "step_size": float(self.step_size().detach()),
            "energy_drop": float((out.energies[0].detach() - final_energy).mean()),
            "energy_threshold": float(self.energy_threshold),
        }
        return loss, info

    @torch.no_grad()
    def _track_threshold(self, obs_tokens: torch.Tensor, y_final: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """Energies of the final training iterates (B,); in train mode they update the running
        quantile (of the live weights; ``calibrate`` replaces it for the weights evaluated)."""
        c = self.config
        e = self.energy(obs_tokens.detach(), y_final.detach(), attn_mask).float()
        if self.training:
            q = torch.quantile(e, c.energy_quantile)
            if int(self.energy_calibrations) > 0:
                q = c.energy_momentum * self.energy_threshold + (1 - c.energy_momentum) * q
            self.energy_threshold.copy_(q)
            self.energy_calibrations += 1
        return e

    # --- calibration of the weights evaluated (the trainer's EMA copy) -------------------------
    def calibration_batches(self) -> int:
        return self.config.calibration_batches

    def final_energies(self, batch: Batch) -> torch.Tensor:
        """(B,) energies of the final iterates of the training descent on ``batch`` (no parameter
        graph); what the threshold is a quantile of."""
        with torch.inference_mode(False), torch.enable_grad():
            out, _, _, obs_tokens, attn_mask = self._training_descent(batch, create_graph=False)
            with torch.no_grad():
                return self.energy(obs_tokens, out.iterates[-1].detach(), attn_mask).float()

    def calibrate(self, batches: list[Batch]) -> None:
        """Set ``energy_threshold`` to the ``energy_quantile`` of these weights' own final training
        energies on ``batches`` (pooled; no running average). The running quantile tracked during
        training belongs to the live weights, which the EMA weights evaluated and saved are not:
        their energies differ (an energy's offset is free), so its threshold would extend or cut
        the wrong descents. Seeded inside a forked RNG: repeatable, and the caller's stream is kept."""
        if not batches:
            raise ValueError("calibrate needs at least one batch")
        device = self.energy_threshold.device
        cuda = []
        if device.type == "cuda":
            cuda = [device.index if device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(0)
            e = torch.cat([self.final_energies(b) for b in batches])
        self.energy_threshold.copy_(torch.quantile(e, self.config.energy_quantile))

    # --- inference ---------------------------------------------------------------------------
    def init_state(self, batch_size: int) -> PolicyState:
        """No previous chunk: the next ``act`` starts from noise."""
        return PolicyState()

    def _start(self, state: PolicyState, b: int, like: torch.Tensor) -> torch.Tensor:
        """y_0: noise, or the previous chunk shifted by the executed actions (last one held)."""
        c = self.config
        shape = (b, c.horizon, self.features.action_dim)
        prev = state.tensors.get(CHUNK) if c.warm_start else None
        if prev is None:
            return torch.randn(shape, device=like.device, dtype=like.dtype)
        if tuple(prev.shape) != shape:
            raise ValueError(
                f"PolicyState.tensors[{CHUNK!r}] has shape {tuple(prev.shape)}, expected {shape}: reset with init_state({b})"
            )
        k = c.n_action_steps
        return torch.cat((prev[:, k:], prev[:, -1:].expand(-1, k, -1)), dim=1).to(like)

    def descend(self, obs: Obs, y0: torch.Tensor | None = None, steps: int | None = None,
                adaptive: bool | None = None) -> Descent:
        """Encode ``obs`` once and descend the energy from ``y0`` (default noise); ``steps`` and
        ``adaptive`` override the config. Works under ``torch.inference_mode()``."""
        c = self.config
        with torch.no_grad():
            obs_tokens, attn_mask = self.observation_tokens(obs)
        if y0 is None:
            y0 = torch.randn(obs_tokens.shape[0], c.horizon, self.features.action_dim, device=obs_tokens.device)
        adaptive = c.adaptive if adaptive is None else adaptive
        steps = steps or c.inference_steps
        with torch.inference_mode(False):
            # Normal (not inference-mode) tensors: the descent records a graph through them.
            obs_tokens = obs_tokens.clone()
            attn_mask = None if attn_mask is None else attn_mask.clone()
            step, threshold = self.step_size().detach().clone(), self.energy_threshold.clone()
        return descend(
            self.energy_fn(obs_tokens, attn_mask), y0, step, steps,
            max_steps=max(steps, c.max_inference_steps) if adaptive else steps,
            tol=c.stop_tol if adaptive else None,
            threshold=threshold if adaptive else math.inf,
            noise_std=c.inference_noise,
        )

    def act(self, obs: Obs, state: PolicyState) -> tuple[torch.Tensor, PolicyState]:
        c = self.config
        ref = next(v for v in obs.values() if isinstance(v, torch.Tensor))
        res = self.descend(obs, self._start(state, ref.shape[0], ref.float()))
        start = c.n_obs_steps - 1  # the chunk starts at the oldest observed frame
        y = res.y[:, start : start + c.n_action_steps]
        if c.action_tokenizer.normalization == "min_max":  # the demonstrations' range
            y = y.clamp(-1, 1)
        actions = self.tokenizer.decode(y)
        info = {
            "uncertainty": res.energy,
            "energy_steps": int(res.steps.max()),
            "compute_steps": res.steps,
            "energy_threshold": float(self.energy_threshold),
        }
        # The kept chunk is the descent's end point itself, whose energy ``uncertainty`` is.
        return actions, PolicyState(tensors={CHUNK: res.y}, step=state.step + 1, info=info)
