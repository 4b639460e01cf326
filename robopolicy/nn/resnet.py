"""ResNet-18 with GroupNorm instead of BatchNorm (Chi et al. replace BN because its running
statistics misbehave with EMA weights and small batches), written here because torchvision does
not import beside this torch build. Returns the last feature map; pooling is the caller's choice
(``SpatialSoftmax`` for keypoints, or the map's cells as tokens)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _gn(channels: int) -> nn.GroupNorm:
    # 16 channels a group, as in Diffusion Policy's ResNet variant.
    return nn.GroupNorm(max(1, channels // 16), channels)


class BasicBlock(nn.Module):
    """Two 3x3 convs with GroupNorm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _gn(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = _gn(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), _gn(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


class ResNet18GN(nn.Module):
    """(N, in_channels, H, W) -> (N, 512, ~H/32, ~W/32)."""

    out_channels = 512

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
            _gn(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def feature_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, h, w) of the output for an input of this size: five stride-2 stages, each
        ``n -> (n - 1) // 2 + 1`` with these paddings."""
        for _ in range(5):
            height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        return self.out_channels, height, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))
