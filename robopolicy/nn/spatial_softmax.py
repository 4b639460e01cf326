"""Spatial softmax (Levine et al. 2016): each keypoint channel becomes the expected (x, y) of its
softmax over the feature map, in [-1, 1] image coordinates."""

from __future__ import annotations

import torch
from torch import nn


class SpatialSoftmax(nn.Module):
    """(N, C, h, w) -> (N, num_keypoints, 2); a 1x1 conv first maps C to ``num_keypoints``
    channels (None keeps the C channels as keypoints)."""

    def __init__(self, in_channels: int, height: int, width: int, num_keypoints: int | None = 32):
        super().__init__()
        self.height, self.width = height, width
        # No bias: a per-keypoint constant cancels in the softmax over positions.
        self.proj = nn.Conv2d(in_channels, num_keypoints, 1, bias=False) if num_keypoints else nn.Identity()
        self.num_keypoints = num_keypoints or in_channels
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        # Derived from the map size, so not saved in the state_dict.
        self.register_buffer("grid", torch.stack((xs.reshape(-1), ys.reshape(-1)), dim=1), persistent=False)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.shape[-2:] != (self.height, self.width):
            raise ValueError(f"SpatialSoftmax built for a {self.height}x{self.width} map, got {tuple(feats.shape[-2:])}")
        logits = self.proj(feats).flatten(2)  # (N, K, h*w)
        return torch.softmax(logits, dim=-1) @ self.grid.to(logits.dtype)
