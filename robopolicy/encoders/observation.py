"""ObservationEncoder: the one encoder every policy family uses.

Input: a normalized observation dict (``Normalizer.normalize_obs``) with ``T_obs`` stacked frames:
``observation.state`` (B, T, S), ``observation.images.<cam>`` (B, T, C, H, W), ``task`` list[str].

Output ``Tokens``:
* ``pooled`` (B, pooled_dim): per step ``[camera features..., state feature]`` flattened over the
  T steps (Chi et al.'s global condition), then the 384-d instruction embedding if language is
  used. For UNet policies.
* ``x`` (B, N, D) and ``mask`` (B, N) (True = real token): per step one token per camera
  (keypoints) or one per feature-map cell, then one state token; after the T steps, one language
  token. Each token gets a learned step embedding and a learned type embedding (which camera,
  state, language; feature-map cells also a learned cell embedding). For transformer policies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robopolicy.encoders.config import EncoderConfig
from robopolicy.encoders.image import CameraEncoder
from robopolicy.encoders.language import LANGUAGE_DIM, embed_instructions
from robopolicy.types import STATE_KEY, TASK_KEY, FeatureSpec, Obs


@dataclass
class Tokens:
    """What the encoder returns; fields a config did not ask for are None."""

    x: torch.Tensor | None
    """(B, N, D) observation tokens."""
    mask: torch.Tensor | None
    """(B, N) bool, True where a token is real."""
    pooled: torch.Tensor | None
    """(B, pooled_dim) flat conditioning vector."""


def _state_encoder(kind: str, state_dim: int, width: int) -> tuple[nn.Module, int]:
    if kind == "identity":
        return nn.Identity(), state_dim
    if kind == "linear":
        return nn.Linear(state_dim, width), width
    return nn.Sequential(nn.Linear(state_dim, width), nn.Mish(), nn.Linear(width, width)), width


class ObservationEncoder(nn.Module):
    """See the module docstring. ``n_obs_steps`` fixes T (the pooled width depends on it)."""

    def __init__(self, config: EncoderConfig, features: FeatureSpec, n_obs_steps: int):
        super().__init__()
        if features.state_dim is None and not features.cameras:
            raise ValueError("FeatureSpec has neither a state nor a camera: nothing to encode")
        self.config, self.features, self.n_obs_steps = config, features, n_obs_steps
        make_tokens = config.token_dim is not None
        d = config.token_dim or 0
        kp_tokens = make_tokens and config.image_tokens == "keypoints"

        # Cameras
        self.cameras = list(features.cameras)
        self.camera_encoders = nn.ModuleDict()
        if config.share_image_backbone and self.cameras:
            if len(set(features.cameras.values())) > 1:
                raise ValueError(f"share_image_backbone needs cameras of one shape, got {features.cameras}")
            # Stored once (not under every camera name) so the state_dict holds no aliased tensors.
            shape = features.cameras[self.cameras[0]]
            self.camera_encoders["shared"] = CameraEncoder(self.cameras[0], config, shape, need_keypoints=kp_tokens, need_pooled=config.use_pooled)
        else:
            for cam, shape in features.cameras.items():
                self.camera_encoders[cam] = CameraEncoder(cam, config, shape, need_keypoints=kp_tokens, need_pooled=config.use_pooled)

        # State
        self.state_encoder = None
        state_width = 0
        if features.state_dim is not None:
            self.state_encoder, state_width = _state_encoder(config.state_encoder, features.state_dim, config.state_feature_dim)

        # Pooled vector
        per_step = sum(self.camera_encoder(c).pooled_dim for c in self.cameras) + state_width
        self.pooled_dim = (n_obs_steps * per_step + (LANGUAGE_DIM if features.use_language else 0)) if config.use_pooled else 0

        # Tokens
        self.token_dim = config.token_dim
        if make_tokens:
            self.camera_token_proj = nn.ModuleDict()
            self.cell_embed = nn.ParameterDict()
            for cam in self.cameras:
                enc = self.camera_encoder(cam)
                if kp_tokens:
                    self.camera_token_proj[cam] = nn.Linear(enc.keypoint_dim, d)
                else:
                    fc, fh, fw = enc.feature_map_shape
                    self.camera_token_proj[cam] = nn.Linear(fc, d)
                    self.cell_embed[cam] = nn.Parameter(torch.randn(fh * fw, d) * 0.02)
            self.state_token_proj = nn.Linear(state_width, d) if self.state_encoder is not None else None
            self.language_token_proj = nn.Linear(LANGUAGE_DIM, d) if features.use_language else None
            self.step_embed = nn.Parameter(torch.randn(n_obs_steps, d) * 0.02)
            # One row per token type present: each camera, then state, then language.
            types = self.cameras + (["state"] if self.state_encoder is not None else []) + (["language"] if features.use_language else [])
            self._type_index = {name: i for i, name in enumerate(types)}
            self.type_embed = nn.Parameter(torch.randn(len(types), d) * 0.02)

    # --- helpers -----------------------------------------------------------------------------
    def camera_encoder(self, camera: str) -> CameraEncoder:
        return self.camera_encoders["shared" if self.config.share_image_backbone else camera]  # type: ignore[return-value]

    def _get(self, obs: Obs, key: str, ndim: int, tail: tuple[int, ...]) -> torch.Tensor:
        if key not in obs:
            raise ValueError(f"observation is missing {key!r} (have: {sorted(obs)})")
        x = obs[key]
        if not isinstance(x, torch.Tensor) or x.dim() != ndim or x.shape[1] != self.n_obs_steps or tuple(x.shape[2:]) != tail:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"observation {key!r} must have shape (B, {self.n_obs_steps}, {', '.join(map(str, tail))}), got {got}")
        return x

    def forward(self, obs: Obs) -> Tokens:
        feats = self.features
        t = self.n_obs_steps
        step_parts: list[torch.Tensor] = []  # (B, T, *) pooled pieces
        token_parts: list[torch.Tensor] = []  # (B, T, n, D) per-step tokens
        make_tokens = self.token_dim is not None

        for cam in self.cameras:
            images = self._get(obs, "observation.images." + cam, 5, tuple(feats.cameras[cam]))
            enc = self.camera_encoder(cam)
            fmap, kp, pooled = enc(images)
            if pooled is not None:
                step_parts.append(pooled)
            if make_tokens:
                if self.config.image_tokens == "keypoints":
                    tok = self.camera_token_proj[cam](kp).unsqueeze(2)  # (B, T, 1, D)
                else:
                    cells = fmap.flatten(2).transpose(1, 2)  # (B*T, h*w, C)
                    tok = (self.camera_token_proj[cam](cells) + self.cell_embed[cam]).unflatten(0, (-1, t))
                token_parts.append(tok + self.type_embed[self._type_index[cam]])

        if self.state_encoder is not None:
            state = self.state_encoder(self._get(obs, STATE_KEY, 3, (feats.state_dim,)))
            step_parts.append(state)
            if make_tokens:
                token_parts.append((self.state_token_proj(state) + self.type_embed[self._type_index["state"]]).unsqueeze(2))

        language = None
        if feats.use_language:
            if TASK_KEY not in obs:
                raise ValueError("policy is language-conditioned but the observation has no 'task' instructions")
            ref = next(iter(step_parts or token_parts))
            language = embed_instructions(obs[TASK_KEY]).to(device=ref.device, dtype=ref.dtype)
            if language.shape[0] != ref.shape[0]:
                raise ValueError(f"'task' has {language.shape[0]} instructions for a batch of {ref.shape[0]}")

        pooled = None
        if self.config.use_pooled:
            pooled = torch.cat(step_parts, dim=-1).flatten(1)
            if language is not None:
                pooled = torch.cat((pooled, language), dim=-1)

        x = mask = None
        if make_tokens:
            x = torch.cat(token_parts, dim=2) + self.step_embed[:, None, :]  # (B, T, n, D)
            x = x.flatten(1, 2)
            if language is not None:
                lang = self.language_token_proj(language) + self.type_embed[self._type_index["language"]]
                x = torch.cat((x, lang.unsqueeze(1)), dim=1)
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return Tokens(x=x, mask=mask, pooled=pooled)
