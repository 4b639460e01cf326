"""The state world model: p(s_{t+1..t+k} | s_{t-T+1..t}, a_{t-T+1..t+k-1}) by EDM diffusion.

Conditioning: the last ``n_history`` states (normalized by the shared ``Normalizer``) and their
actions (normalized by the shared ``ActionTokenizer``, continuous), flattened, plus the future
actions when ``n_future > 1``. Slots before the episode start repeat the first state and hold
action 0 (normalized), exactly as ``init_rollout`` fills them at an imagined reset.

Target: the per-step change of the normalized state, ``s_{t+j} - s_{t+j-1}``, scaled to unit std
per dimension (``observation.state.delta`` statistics, fitted from the training episodes), so the
network predicts a delta to the last state. The denoiser is a residual MLP whose blocks are
modulated by the noise level (FiLM); sampling takes ``edm.num_steps`` Euler/Heun steps.

Heads (``heads.OutcomeHeads``, shared with the image model: a separate residual MLP on the same
history + the action taken): success logit (BCE on ``next.success``), dense reward (MSE on
``next.reward``, mean/std normalized) and termination logit (BCE on ``next.done``). ``objective="regression"`` swaps the diffusion for a deterministic MSE
regression of the same delta by the same network (the fidelity baseline).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from robopolicy import registry
from robopolicy.nn.embeddings import TimestepEmbedding
from robopolicy.normalize import FeatureNormalizer, Normalizer
from robopolicy.tokenizers.action import ActionTokenizer
from robopolicy.types import ACTION_KEY, ACTION_PAD_KEY, STATE_KEY, FeatureSpec
from robopolicy.world_model import edm
from robopolicy.world_model.base import RolloutState, StepOutput, WorldModel
from robopolicy.world_model.config import StateWorldModelConfig
from robopolicy.world_model.data import NEXT_STATE_KEY, NEXT_STATE_PAD_KEY, Episodes
from robopolicy.world_model.denoiser import ResidualMLP
from robopolicy.world_model.heads import OutcomeHeads, outcome_loss, outcome_predictions
from robopolicy.world_model.play import DONE_KEY, REWARD_KEY, SUCCESS_KEY

DELTA_KEY = "observation.state.delta"
_NOISE_FEATURE_SCALE = edm.NOISE_FEATURE_SCALE


@registry.register("world_model", "state")
class StateWorldModel(WorldModel):
    """See the module docstring."""

    config_class = StateWorldModelConfig

    def __init__(self, config: StateWorldModelConfig, features: FeatureSpec, stats: Mapping[str, Any] | None):
        """``stats``: the dataset's stats plus ``observation.state.delta`` (``delta_stats``); None
        when the model is about to be loaded from a checkpoint."""
        super().__init__(config, features)
        if features.state_dim is None:
            raise ValueError("StateWorldModel needs observation.state in the dataset")
        c = config
        S, A, T, K = features.state_dim, features.action_dim, c.n_history, c.n_future
        self.S, self.A, self.T, self.K = S, A, T, K
        self.normalizer = Normalizer(
            {STATE_KEY: c.state_normalization, DELTA_KEY: "mean_std", REWARD_KEY: "mean_std"},
            {STATE_KEY: (S,), DELTA_KEY: (S,), REWARD_KEY: (1,)},
            stats,
        )
        self.tokenizer = ActionTokenizer(c.tokenizer, horizon=T - 1 + K, action_dim=A, stats=stats)
        cond_dim = T * S + (T - 1 + K) * A
        head_dim = T * S + T * A
        if c.objective == "diffusion":
            self.noise_embed = TimestepEmbedding(c.noise_embed_dim)
            self.net = ResidualMLP(K * S + cond_dim, K * S, c.hidden_dim, c.depth, c.noise_embed_dim, c.dropout)
            self.sigmas = edm.karras_sigmas(c.edm)
        else:
            self.noise_embed = None
            self.net = ResidualMLP(cond_dim, K * S, c.hidden_dim, c.depth, None, c.dropout)
        self.heads = OutcomeHeads(head_dim, c.head_hidden_dim, c.head_depth)

    @property
    def observation_keys(self) -> list[str]:
        return [STATE_KEY]

    # --- statistics ---------------------------------------------------------------------------
    @classmethod
    def from_episodes(cls, config: StateWorldModelConfig, episodes: Episodes) -> "StateWorldModel":
        """A model sized and normalized for ``episodes`` (the training set)."""
        if episodes.stats is None:
            raise ValueError("from_episodes: the dataset has no meta/stats.json")
        stats = dict(episodes.stats)
        stats[DELTA_KEY] = cls.delta_stats(config, stats, episodes.states, episodes.bounds)
        features = FeatureSpec(action_dim=episodes.actions.shape[1], state_dim=episodes.states.shape[1],
                               fps=episodes.fps)
        return cls(config, features, stats)

    @staticmethod
    def delta_stats(config: StateWorldModelConfig, stats: Mapping[str, Any], states: np.ndarray,
                    bounds: np.ndarray) -> dict[str, np.ndarray]:
        """mean/std of the per-step change of the normalized state over the episodes' transitions
        (``states`` (N, S) raw, ``bounds`` (E, 2) [start, end) rows), std floored at
        ``delta_std_floor``: the ``observation.state.delta`` entry ``__init__`` needs."""
        norm = FeatureNormalizer(STATE_KEY, config.state_normalization, (states.shape[1],), stats)
        s = norm.normalize(torch.as_tensor(np.asarray(states, dtype=np.float32))).numpy()
        deltas = [np.diff(s[a:b], axis=0) for a, b in bounds if b - a > 1]
        if not deltas:
            raise ValueError("delta_stats: no episode has two frames, so there is no transition to learn")
        d = np.concatenate(deltas)
        return {"mean": d.mean(0), "std": np.maximum(d.std(0), config.delta_std_floor)}

    # --- shared pieces ------------------------------------------------------------------------
    def _denoiser(self, cond: torch.Tensor):
        def net(x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
            emb = self.noise_embed(c_noise * _NOISE_FEATURE_SCALE)
            return self.net(torch.cat([x_in, cond], dim=-1), emb)

        return net

    def _predict_deltas(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, K*S) normalized-delta prediction: sampled (diffusion) or regressed."""
        if self.config.objective == "regression":
            return self.net(cond)
        e = self.config.edm
        return edm.sample(self._denoiser(cond), (cond.shape[0], self.K * self.S), self.sigmas, e.sigma_data,
                          e.sampler, generator=generator, device=cond.device, dtype=cond.dtype)

    def _encode_actions(self, actions: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        a = self.tokenizer.encode(actions)
        return a if pad is None else a.masked_fill(pad.unsqueeze(-1), 0.0)

    # --- training -----------------------------------------------------------------------------
    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Diffusion (or regression) loss on the next-state deltas plus the heads' losses.

        batch: ``observation.state`` (B, T, S), ``action`` (B, T-1+K, A) and ``action_is_pad``,
        ``next.observation.state`` (B, K, S) and its ``_is_pad`` (B, K), ``next.reward`` /
        ``next.success`` / ``next.done`` (B,) (what ``TransitionWindows`` yields).
        """
        B = self._check_batch(batch)
        c = self.config
        s_n = self.normalizer.normalize(STATE_KEY, batch[STATE_KEY].float())
        a_n = self._encode_actions(batch[ACTION_KEY].float(), batch.get(ACTION_PAD_KEY))
        cond = torch.cat([s_n.flatten(1), a_n.flatten(1)], dim=1)
        nxt = self.normalizer.normalize(STATE_KEY, batch[NEXT_STATE_KEY].float())
        chain = torch.cat([s_n[:, -1:], nxt], dim=1)
        x0 = self.normalizer.normalize(DELTA_KEY, chain.diff(dim=1))  # (B, K, S)
        valid = (~batch[NEXT_STATE_PAD_KEY].bool()).float().unsqueeze(-1)  # (B, K, 1)
        if c.objective == "diffusion":
            sigma = edm.training_sigmas(B, c.edm, x0.device)
            x = x0 + sigma.view(-1, 1, 1) * torch.randn_like(x0)
            c_skip, c_out, c_in, c_noise = (v.view(-1, 1, 1) for v in edm.coefficients(sigma, c.edm.sigma_data))
            out = self._denoiser(cond)((c_in * x).flatten(1), c_noise.view(-1)).view_as(x0)
            target = (x0 - c_skip * x) / c_out
        else:
            out = self.net(cond).view_as(x0)
            target = x0
        err = (out.float() - target.float()) ** 2 * valid
        dyn = err.sum() / (valid.sum() * self.S).clamp_min(1.0)

        head_in = torch.cat([s_n.flatten(1), a_n[:, : self.T].flatten(1)], dim=1)
        heads, info = outcome_loss(self.heads.outcomes(head_in), batch, self.normalizer, c.success_weight,
                                   c.reward_weight, c.done_weight)
        return dyn + heads, {"dynamics": float(dyn.detach()), **info}

    def _check_batch(self, batch: dict[str, Any]) -> int:
        need = (STATE_KEY, ACTION_KEY, NEXT_STATE_KEY, NEXT_STATE_PAD_KEY, REWARD_KEY, SUCCESS_KEY, DONE_KEY)
        missing = [k for k in need if k not in batch]
        if missing:
            raise ValueError(f"world-model batch is missing {missing} (build it with TransitionWindows)")
        s, a, n = batch[STATE_KEY], batch[ACTION_KEY], batch[NEXT_STATE_KEY]
        B = s.shape[0]
        want = {STATE_KEY: (B, self.T, self.S), ACTION_KEY: (B, self.T - 1 + self.K, self.A),
                NEXT_STATE_KEY: (B, self.K, self.S)}
        for key, shape in want.items():
            if tuple(batch[key].shape) != shape:
                raise ValueError(f"world-model batch {key!r} has shape {tuple(batch[key].shape)}, expected {shape} "
                                 f"(n_history={self.T}, n_future={self.K})")
        del a, n
        return B

    # --- imagination --------------------------------------------------------------------------
    def init_rollout(self, obs: dict[str, torch.Tensor]) -> RolloutState:
        """B imagined episodes starting at real observations ``obs[observation.state]`` (B, S)."""
        if STATE_KEY not in obs:
            raise ValueError(f"init_rollout needs {STATE_KEY!r} (got keys {sorted(obs)})")
        s = torch.as_tensor(obs[STATE_KEY], dtype=torch.float32, device=self._device())
        if s.dim() != 2 or s.shape[1] != self.S:
            raise ValueError(f"init_rollout: {STATE_KEY} must have shape (B, {self.S}), got {tuple(s.shape)}")
        s_n = self.normalizer.normalize(STATE_KEY, s)
        return RolloutState({
            "states": s_n.unsqueeze(1).repeat(1, self.T, 1),
            "actions": torch.zeros(s.shape[0], self.T - 1, self.A, device=s.device),
        })

    def rollout_from_history(self, states: torch.Tensor, actions: torch.Tensor) -> RolloutState:
        """The imagination state mid-episode: the last ``n_history`` real states (B, T, S) and the
        actions taken after the first T-1 of them (B, T-1, A), raw units (open-loop evaluation)."""
        if states.shape[1:] != (self.T, self.S) or actions.shape[1:] != (self.T - 1, self.A):
            raise ValueError(f"rollout_from_history: need states (B, {self.T}, {self.S}) and actions "
                             f"(B, {self.T - 1}, {self.A}), got {tuple(states.shape)} and {tuple(actions.shape)}")
        dev = self._device()
        return RolloutState({"states": self.normalizer.normalize(STATE_KEY, states.float().to(dev)),
                             "actions": self.tokenizer.encode(actions.float().to(dev))})

    @torch.no_grad()
    def predict_heads(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Success probability, reward (raw) and termination probability (B,) of a training-style
        batch's frames (``TransitionWindows.batch``): the heads on the true history and action."""
        s_n = self.normalizer.normalize(STATE_KEY, batch[STATE_KEY].float())
        a_n = self._encode_actions(batch[ACTION_KEY].float(), batch.get(ACTION_PAD_KEY))
        head_in = torch.cat([s_n.flatten(1), a_n[:, : self.T].flatten(1)], dim=1)
        return outcome_predictions(self.heads.outcomes(head_in), self.normalizer)

    @torch.no_grad()
    def step(self, rollout: RolloutState, action: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[StepOutput, RolloutState]:
        """One imagined step of every env from raw actions (B, A)."""
        states, past = rollout.tensors["states"], rollout.tensors["actions"]
        B = states.shape[0]
        action = torch.as_tensor(action, dtype=torch.float32, device=states.device)
        if action.shape != (B, self.A):
            raise ValueError(f"world model step: actions must have shape ({B}, {self.A}), got {tuple(action.shape)}")
        if not torch.isfinite(action).all():
            raise ValueError("world model step: actions have non-finite values")
        a_n = self.tokenizer.encode(action.unsqueeze(1))  # (B, 1, A)
        acts = torch.cat([past, a_n], dim=1)
        # Future actions of a multi-step model are unknown here: zeros, as past the end of an episode.
        future = torch.zeros(B, self.K - 1, self.A, device=states.device)
        cond = torch.cat([states.flatten(1), acts.flatten(1), future.flatten(1)], dim=1)
        delta_n = self._predict_deltas(cond, generator).view(B, self.K, self.S)[:, 0]
        nxt = states[:, -1] + self.normalizer.unnormalize(DELTA_KEY, delta_n)
        if self.config.clip_state is not None:
            nxt = nxt.clamp(-self.config.clip_state, self.config.clip_state)
        pred = outcome_predictions(self.heads.outcomes(torch.cat([states.flatten(1), acts.flatten(1)], dim=1)),
                                   self.normalizer)
        out = StepOutput(obs={STATE_KEY: self.normalizer.unnormalize(STATE_KEY, nxt)}, reward=pred[REWARD_KEY],
                         success=pred[SUCCESS_KEY], done=pred[DONE_KEY])
        new = RolloutState({"states": torch.cat([states[:, 1:], nxt.unsqueeze(1)], dim=1),
                            "actions": acts[:, 1:]}, rollout.step + 1)
        return out, new

    def _device(self) -> torch.device:
        return next(self.parameters()).device
