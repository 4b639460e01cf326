"""The image world model: p(o_{t+1}, s_{t+1} | o_{t-T+1..t}, s_{t-T+1..t}, a_{t-T+1..t}) by EDM diffusion.

What is denoised: one vector per sample packing the next camera frame (pixels scaled to [-1, 1],
C*H*W values; with ``frame_target=residual``, the default, its difference from the last frame, so
that an untrained model copies the last frame and training learns only what changes, scaled from
its measured std to ``edm.sigma_data`` (``residual_std``)) and the next state's change (the normalized state's per-step delta, scaled to unit
std per dimension by the ``observation.state.delta`` statistics as in the state model, then by
``edm.sigma_data``, so both parts have about the data std EDM assumes; 0.5 as DIAMOND). One noise
level per sample for both parts; the few-step Euler (or Heun) sampler of ``edm.py`` draws both
together, so the imagined frame and state come from one joint sample.

The network (the shared DiT of ``robopolicy/nn/dit.py``, adaLN-Zero blocks) reads one sequence

    [ state token | frame patch tokens ]

* frame tokens, as DIAMOND stacks frames on channels: the noisy next frame and the last
  ``n_history`` real (or imagined) frames are concatenated on the channel axis and cut into
  p x p patches (64 tokens for 64 x 64 frames at p = 8), linearly embedded, plus fixed 2-D sin/cos
  positions; each patch token thus sees its patch now, before and noisy-next;
* the state token: the noisy next-state delta together with the past normalized states;
* the adaLN vector of every block: the noise-level embedding + an embedding of the actions
  (normalized by the shared ``ActionTokenizer``, the T actions taken at the history frames, the last
  being the one whose outcome is predicted) + an embedding of the past states.

Two adaLN output heads (frame patches, state delta) give EDM's F; the loss is EDM's
(``edm.training_target``), the frame part averaged over pixels plus ``state_loss_weight`` times the
state part, skipped where there is no recorded next frame (episode ends).

Success / reward / termination: the heads shared with the state model (``heads.OutcomeHeads``) on
the normalized state history and the actions taken (the state carries the task's success
geometry; the frames add nothing the heads are measured on yet).

Imagination: ``init_rollout`` takes the env's raw observation (``observation.state`` (B, S) and the
camera (B, H, W, C) uint8); every ``step`` returns the same (the imagined frame rounded to uint8),
and the history rolls with the rounded frame, so the model sees what the policy sees.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from robopolicy import registry
from robopolicy.nn.dit import AdaLNHead, DiT, patchify, sincos_2d, unpatchify, zero_init_
from robopolicy.nn.embeddings import TimestepEmbedding
from robopolicy.normalize import Normalizer
from robopolicy.tokenizers.action import ActionTokenizer
from robopolicy.types import ACTION_KEY, ACTION_PAD_KEY, IMAGE_PREFIX, STATE_KEY, FeatureSpec
from robopolicy.world_model import edm
from robopolicy.world_model.base import RolloutState, StepOutput, WorldModel
from robopolicy.world_model.config import ImageWorldModelConfig
from robopolicy.world_model.data import NEXT_STATE_KEY, NEXT_STATE_PAD_KEY, Episodes, next_key
from robopolicy.world_model.heads import OutcomeHeads, outcome_loss, outcome_predictions
from robopolicy.world_model.play import DONE_KEY, REWARD_KEY, SUCCESS_KEY
from robopolicy.world_model.state_model import DELTA_KEY, StateWorldModel


def check_frame_size(height: int, width: int, patch: int, camera: str = "") -> None:
    """A clear error when frames cannot be cut into whole patches."""
    if patch < 1 or height % patch or width % patch:
        cam = f" of camera {camera!r}" if camera else ""
        raise ValueError(f"image world model: frames{cam} are {height}x{width}, not divisible by "
                         f"image_model.patch_size={patch} (record the play data at image_size=64 with "
                         f"patch_size=8, or choose a patch size that divides the frame size)")


def residual_std(frames: np.ndarray, bounds: np.ndarray, max_transitions: int = 20000) -> float:
    """Std of the next-minus-last frame residual in [-1, 1] pixels over (up to ``max_transitions``
    evenly spaced) transitions inside episodes; ``frames`` (N, C, H, W) uint8, ``bounds`` (E, 2)."""
    rows = np.concatenate([np.arange(a, b - 1) for a, b in bounds if b - a > 1] or [np.zeros(0, int)])
    if not len(rows):
        raise ValueError("residual_std: no episode has two frames, so there is no transition to learn")
    rows = rows[np.linspace(0, len(rows) - 1, min(len(rows), max_transitions)).round().astype(int)]
    r = (frames[rows + 1].astype(np.float32) - frames[rows].astype(np.float32)) * (2 / 255)
    return float(max(r.std(), 1e-3))


@registry.register("world_model", "image")
class ImageWorldModel(WorldModel):
    """See the module docstring."""

    config_class = ImageWorldModelConfig

    def __init__(self, config: ImageWorldModelConfig, features: FeatureSpec, stats: Mapping[str, Any] | None):
        """``stats``: the dataset's stats plus ``observation.state.delta`` (``from_episodes`` adds
        it); None when the model is about to be loaded from a checkpoint."""
        super().__init__(config, features)
        c = config
        if features.state_dim is None:
            raise ValueError("ImageWorldModel needs observation.state in the dataset")
        if not features.cameras:
            raise ValueError("ImageWorldModel needs a camera in the dataset (record the play data with obs=image)")
        cam = c.camera or next(iter(features.cameras))
        if cam not in features.cameras:
            raise ValueError(f"image_model.camera={cam!r} is not a camera of the dataset ({sorted(features.cameras)})")
        C, H, W = features.cameras[cam]
        check_frame_size(H, W, c.patch_size, cam)
        S, A, T, p, d = features.state_dim, features.action_dim, c.n_history, c.patch_size, c.dim
        self.camera, self.camera_key = cam, IMAGE_PREFIX + cam
        self.C, self.H, self.W, self.S, self.A, self.T = C, H, W, S, A, T
        self.n_pixels = C * H * W
        self.normalizer = Normalizer(
            {STATE_KEY: c.state_normalization, DELTA_KEY: "mean_std", REWARD_KEY: "mean_std"},
            {STATE_KEY: (S,), DELTA_KEY: (S,), REWARD_KEY: (1,)},
            stats,
        )
        self.tokenizer = ActionTokenizer(c.tokenizer, horizon=T, action_dim=A, stats=stats)
        self.patch_in = nn.Linear(p * p * C * (T + 1), d)
        self.register_buffer("patch_pos", sincos_2d(d, H // p, W // p), persistent=False)
        self.state_in = nn.Linear(S + T * S, d)
        self.noise_embed = TimestepEmbedding(d)
        self.action_embed = nn.Sequential(nn.Linear(T * A, d), nn.SiLU(), nn.Linear(d, d))
        self.state_embed = nn.Sequential(nn.Linear(T * S, d), nn.SiLU(), nn.Linear(d, d))
        self.dit = DiT(d, c.depth, c.n_heads, mlp_ratio=c.mlp_ratio, dropout=c.dropout)
        self.frame_head = AdaLNHead(d, p * p * C, d)
        self.state_head = AdaLNHead(d, S, d)
        for head in (self.frame_head, self.state_head):
            zero_init_(head)
        self.heads = OutcomeHeads(T * S + T * A, c.head_hidden_dim, c.head_depth)
        self.sigmas = edm.karras_sigmas(c.edm)
        self.residual_scale = c.edm.sigma_data / c.residual_std if c.residual_std else 1.0
        """Frame residual -> diffusion units (see ``ImageWorldModelConfig.residual_std``)."""

    @property
    def observation_keys(self) -> list[str]:
        return [STATE_KEY, self.camera_key]

    @classmethod
    def from_episodes(cls, config: ImageWorldModelConfig, episodes: Episodes) -> "ImageWorldModel":
        """A model sized and normalized for ``episodes`` (the training set, loaded with its camera)."""
        if episodes.stats is None:
            raise ValueError("from_episodes: the dataset has no meta/stats.json")
        if not episodes.frames:
            raise ValueError("from_episodes: the episodes hold no camera frames (load_episodes(..., camera_keys=[...]))")
        stats = dict(episodes.stats)
        stats[DELTA_KEY] = StateWorldModel.delta_stats(config, stats, episodes.states, episodes.bounds)
        cameras = {k[len(IMAGE_PREFIX):]: tuple(int(x) for x in v.shape[1:]) for k, v in episodes.frames.items()}
        features = FeatureSpec(action_dim=episodes.actions.shape[1], state_dim=episodes.states.shape[1],
                               cameras=cameras, fps=episodes.fps)
        if config.frame_target == "residual" and config.residual_std is None:
            cam = IMAGE_PREFIX + (config.camera or next(iter(cameras)))
            if cam in episodes.frames:
                config = dataclasses.replace(config, residual_std=residual_std(episodes.frames[cam], episodes.bounds))
        return cls(config, features, stats)

    # --- the denoiser -------------------------------------------------------------------------
    def _cond(self, states_n: torch.Tensor, actions_n: torch.Tensor) -> torch.Tensor:
        """The adaLN vector without the noise level: actions + past states (B, d)."""
        return self.action_embed(actions_n.flatten(1)) + self.state_embed(states_n.flatten(1))

    def _denoiser(self, frames: torch.Tensor, states_n: torch.Tensor, cond: torch.Tensor):
        """EDM's F for the packed (B, C*H*W + S) vector, given the past frames (B, T, C, H, W) in
        [-1, 1], the past normalized states (B, T, S) and the action/state adaLN vector."""
        B, p = frames.shape[0], self.config.patch_size
        past = frames.flatten(1, 2)  # (B, T*C, H, W): frames stacked on channels
        past_states = states_n.flatten(1)

        def net(x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
            noisy_frame = x_in[:, : self.n_pixels].view(B, self.C, self.H, self.W)
            tokens = self.patch_in(patchify(torch.cat([noisy_frame, past], dim=1), p)) + self.patch_pos
            state_tok = self.state_in(torch.cat([x_in[:, self.n_pixels:], past_states], dim=1)).unsqueeze(1)
            c = cond + self.noise_embed(c_noise * edm.NOISE_FEATURE_SCALE)
            h = self.dit(torch.cat([state_tok, tokens], dim=1), c)
            frame = unpatchify(self.frame_head(h[:, 1:], c), p, self.C, self.H, self.W)
            return torch.cat([frame.flatten(1), self.state_head(h[:, :1], c).squeeze(1)], dim=1)

        return net

    def _encode_actions(self, actions: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        a = self.tokenizer.encode(actions)
        return a if pad is None else a.masked_fill(pad.unsqueeze(-1), 0.0)

    @staticmethod
    def _pixels(frames: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float frames -> float in [-1, 1]."""
        f = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
        return f * 2 - 1

    # --- training -----------------------------------------------------------------------------
    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """EDM loss on the packed next frame + next-state delta, plus the heads' losses.

        batch (``TransitionWindows`` with the camera, n_future=1): ``observation.state`` (B, T, S),
        the camera (B, T, C, H, W) and its ``next.`` frames (B, 1, C, H, W) in [0, 1], ``action``
        (B, T, A) and ``action_is_pad``, ``next.observation.state`` (B, 1, S) and its ``_is_pad``,
        ``next.reward`` / ``next.success`` / ``next.done`` (B,).
        """
        B = self._check_batch(batch)
        c = self.config
        sd = c.edm.sigma_data
        s_n = self.normalizer.normalize(STATE_KEY, batch[STATE_KEY].float())
        a_n = self._encode_actions(batch[ACTION_KEY].float(), batch.get(ACTION_PAD_KEY))
        frames = self._pixels(batch[self.camera_key])
        next_frame = self._pixels(batch[next_key(self.camera_key)][:, 0])
        if c.frame_target == "residual":
            next_frame = (next_frame - frames[:, -1]) * self.residual_scale
        next_s = self.normalizer.normalize(STATE_KEY, batch[NEXT_STATE_KEY][:, 0].float())
        delta = self.normalizer.normalize(DELTA_KEY, next_s - s_n[:, -1]) * sd
        x0 = torch.cat([next_frame.flatten(1), delta], dim=1)
        sigma = edm.training_sigmas(B, c.edm, x0.device)
        x = x0 + sigma.view(-1, 1) * torch.randn_like(x0)
        _, _, c_in, c_noise = edm.coefficients(sigma, sd)
        out = self._denoiser(frames, s_n, self._cond(s_n, a_n))(c_in.view(-1, 1) * x, c_noise)
        err = (out.float() - edm.training_target(x0, x, sigma, sd).float()) ** 2
        frame_err, state_err = err[:, : self.n_pixels].mean(1), err[:, self.n_pixels:].mean(1)
        valid = (~batch[NEXT_STATE_PAD_KEY][:, 0].bool()).float()
        n = valid.sum().clamp_min(1.0)
        frame_loss, state_loss = (frame_err * valid).sum() / n, (state_err * valid).sum() / n
        dyn = frame_loss + c.state_loss_weight * state_loss
        head_in = torch.cat([s_n.flatten(1), a_n.flatten(1)], dim=1)
        heads, info = outcome_loss(self.heads.outcomes(head_in), batch, self.normalizer, c.success_weight,
                                   c.reward_weight, c.done_weight)
        return dyn + heads, {"dynamics": float(dyn.detach()), "frame": float(frame_loss.detach()),
                             "state": float(state_loss.detach()), **info}

    def _check_batch(self, batch: dict[str, Any]) -> int:
        nf = next_key(self.camera_key)
        need = (STATE_KEY, ACTION_KEY, NEXT_STATE_KEY, NEXT_STATE_PAD_KEY, self.camera_key, nf,
                REWARD_KEY, SUCCESS_KEY, DONE_KEY)
        missing = [k for k in need if k not in batch]
        if missing:
            raise ValueError(f"image world-model batch is missing {missing} (build it with TransitionWindows on "
                             f"episodes loaded with camera_keys=[{self.camera_key!r}])")
        B = batch[STATE_KEY].shape[0]
        img = (self.C, self.H, self.W)
        want = {STATE_KEY: (B, self.T, self.S), ACTION_KEY: (B, self.T, self.A), NEXT_STATE_KEY: (B, 1, self.S),
                self.camera_key: (B, self.T, *img), nf: (B, 1, *img)}
        for key, shape in want.items():
            if tuple(batch[key].shape) != shape:
                raise ValueError(f"image world-model batch {key!r} has shape {tuple(batch[key].shape)}, expected "
                                 f"{shape} (n_history={self.T}, n_future=1)")
        return B

    # --- imagination --------------------------------------------------------------------------
    def init_rollout(self, obs: dict[str, torch.Tensor]) -> RolloutState:
        """B imagined episodes from real raw observations: ``observation.state`` (B, S) and the
        camera (B, H, W, C) uint8 (the env's format); the history repeats them, with action 0."""
        missing = [k for k in self.observation_keys if k not in obs]
        if missing:
            raise ValueError(f"init_rollout needs {missing} (got keys {sorted(obs)})")
        dev = self._device()
        s = torch.as_tensor(obs[STATE_KEY], dtype=torch.float32, device=dev)
        img = torch.as_tensor(obs[self.camera_key], device=dev)
        if s.dim() != 2 or s.shape[1] != self.S:
            raise ValueError(f"init_rollout: {STATE_KEY} must have shape (B, {self.S}), got {tuple(s.shape)}")
        if tuple(img.shape) != (s.shape[0], self.H, self.W, self.C):
            raise ValueError(f"init_rollout: {self.camera_key} must have shape ({s.shape[0]}, {self.H}, {self.W}, "
                             f"{self.C}) (uint8 pixels, as the env gives them), got {tuple(img.shape)}")
        frame = self._pixels(img.permute(0, 3, 1, 2))
        return RolloutState({
            "frames": frame.unsqueeze(1).repeat(1, self.T, 1, 1, 1),
            "states": self.normalizer.normalize(STATE_KEY, s).unsqueeze(1).repeat(1, self.T, 1),
            "actions": torch.zeros(s.shape[0], self.T - 1, self.A, device=dev),
        })

    def rollout_from_history(self, states: torch.Tensor, actions: torch.Tensor, frames: torch.Tensor) -> RolloutState:
        """The imagination state mid-episode from real data: the last ``n_history`` states (B, T, S),
        the actions taken after the first T-1 of them (B, T-1, A) (raw units) and the frames
        (B, T, C, H, W) as the dataset stores them (uint8, or float in [0, 1])."""
        if (states.shape[1:] != (self.T, self.S) or actions.shape[1:] != (self.T - 1, self.A)
                or tuple(frames.shape[1:]) != (self.T, self.C, self.H, self.W)):
            raise ValueError(f"rollout_from_history: need states (B, {self.T}, {self.S}), actions (B, {self.T - 1}, "
                             f"{self.A}) and frames (B, {self.T}, {self.C}, {self.H}, {self.W}), got "
                             f"{tuple(states.shape)}, {tuple(actions.shape)} and {tuple(frames.shape)}")
        dev = self._device()
        return RolloutState({"frames": self._pixels(frames.to(dev)),
                             "states": self.normalizer.normalize(STATE_KEY, states.float().to(dev)),
                             "actions": self.tokenizer.encode(actions.float().to(dev))})

    @torch.no_grad()
    def predict_heads(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Success probability, reward (raw) and termination probability (B,) of a training-style
        batch's frames: the heads on the true history and actions."""
        s_n = self.normalizer.normalize(STATE_KEY, batch[STATE_KEY].float())
        a_n = self._encode_actions(batch[ACTION_KEY].float(), batch.get(ACTION_PAD_KEY))
        return outcome_predictions(self.heads.outcomes(torch.cat([s_n.flatten(1), a_n.flatten(1)], dim=1)),
                                   self.normalizer)

    @torch.no_grad()
    def step(self, rollout: RolloutState, action: torch.Tensor,
             generator: torch.Generator | None = None) -> tuple[StepOutput, RolloutState]:
        """One imagined step of every env from raw actions (B, A): the next frame (B, H, W, C) uint8
        and state (B, S), the heads' reward / success / done."""
        frames, states, past = (rollout.tensors[k] for k in ("frames", "states", "actions"))
        B = states.shape[0]
        action = torch.as_tensor(action, dtype=torch.float32, device=states.device)
        if action.shape != (B, self.A):
            raise ValueError(f"world model step: actions must have shape ({B}, {self.A}), got {tuple(action.shape)}")
        if not torch.isfinite(action).all():
            raise ValueError("world model step: actions have non-finite values")
        acts = torch.cat([past, self.tokenizer.encode(action.unsqueeze(1))], dim=1)  # (B, T, A)
        e = self.config.edm
        x = edm.sample(self._denoiser(frames, states, self._cond(states, acts)), (B, self.n_pixels + self.S),
                       self.sigmas, e.sigma_data, e.sampler, generator=generator, device=states.device,
                       dtype=states.dtype)
        frame = x[:, : self.n_pixels].view(B, self.C, self.H, self.W)
        if self.config.frame_target == "residual":
            frame = frame / self.residual_scale + frames[:, -1]
        pixels = ((frame + 1) * 127.5).round().clamp(0, 255)
        nxt = states[:, -1] + self.normalizer.unnormalize(DELTA_KEY, x[:, self.n_pixels:] / e.sigma_data)
        if self.config.clip_state is not None:
            nxt = nxt.clamp(-self.config.clip_state, self.config.clip_state)
        pred = outcome_predictions(self.heads.outcomes(torch.cat([states.flatten(1), acts.flatten(1)], dim=1)),
                                   self.normalizer)
        out = StepOutput(
            obs={STATE_KEY: self.normalizer.unnormalize(STATE_KEY, nxt),
                 self.camera_key: pixels.to(torch.uint8).permute(0, 2, 3, 1).contiguous()},
            reward=pred[REWARD_KEY], success=pred[SUCCESS_KEY], done=pred[DONE_KEY],
        )
        new = RolloutState({"frames": torch.cat([frames[:, 1:], (pixels / 127.5 - 1).unsqueeze(1)], dim=1),
                            "states": torch.cat([states[:, 1:], nxt.unsqueeze(1)], dim=1),
                            "actions": acts[:, 1:]}, rollout.step + 1)
        return out, new

    def _device(self) -> torch.device:
        return next(self.parameters()).device


def imagine_from_history(model: ImageWorldModel, episodes: Episodes, starts: np.ndarray, horizon: int,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Open-loop imagination from real histories: for each row ``t`` in ``starts`` (each needs
    ``n_history - 1`` frames before it and ``horizon`` after it in its episode), the model starts
    from the real frames/states/actions up to t and is fed the real actions a_t .. a_{t+h-1}.
    Returns (imagined, real) frames, each (len(starts), horizon, C, H, W) uint8, step h being
    frame t+h+1's prediction and frame t+h+1."""
    T, key = model.T, model.camera_key
    if key not in episodes.frames:
        raise ValueError(f"imagine_from_history: the episodes hold no {key!r} frames")
    starts = np.asarray(starts, dtype=np.int64)
    hist = starts[:, None] + np.arange(-T + 1, 1)
    frames = episodes.frames[key]
    r = model.rollout_from_history(torch.from_numpy(episodes.states[hist]),
                                   torch.from_numpy(episodes.actions[hist[:, :-1]]),
                                   torch.from_numpy(frames[hist]))
    imagined = []
    for h in range(horizon):
        out, r = model.step(r, torch.from_numpy(episodes.actions[starts + h]), generator=generator)
        imagined.append(out.obs[key].permute(0, 3, 1, 2).cpu())
    real = torch.from_numpy(frames[starts[:, None] + np.arange(1, horizon + 1)])
    return torch.stack(imagined, dim=1), real
