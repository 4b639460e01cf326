"""PSNR and SSIM against known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from robopolicy.world_model.metrics import psnr, ssim


def _images(n=2, seed=0, lo=0.2, hi=0.8):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(n, 3, 24, 24, generator=g, dtype=torch.float64)


def test_identical_images_give_inf_psnr_and_unit_ssim():
    x = _images()
    assert torch.isinf(psnr(x, x)).all() and (psnr(x, x) > 0).all()
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64), atol=1e-12)
    u8 = (x * 255).round().to(torch.uint8)
    assert torch.isinf(psnr(u8, u8)).all() and ssim(u8, u8).tolist() == pytest.approx([1.0, 1.0])


def test_constant_offset_gives_the_analytic_psnr():
    x = _images()
    assert psnr(x, x + 0.1).tolist() == pytest.approx([20.0, 20.0], abs=1e-6)  # 10 log10(1 / 0.1^2)
    u8 = (x * 255).round().to(torch.uint8)
    want = 20 * math.log10(255 / 5)
    assert psnr(u8, u8 + 5).tolist() == pytest.approx([want, want], abs=1e-9)
    assert psnr(x, x + 0.1, data_range=2.0).tolist() == pytest.approx([10 * math.log10(4 / 0.01)] * 2)


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = torch.full((1, 3, 16, 16), 0.3), torch.full((1, 3, 16, 16), 0.6)
    c1 = 0.01**2  # variances are zero: SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    want = (2 * 0.3 * 0.6 + c1) / (0.3**2 + 0.6**2 + c1)
    assert float(ssim(a, b)) == pytest.approx(want, rel=1e-6)


def test_ssim_falls_with_noise_and_is_symmetric():
    x = _images(1)
    g = torch.Generator().manual_seed(1)
    small, big = x + 0.02 * torch.randn(x.shape, generator=g), x + 0.2 * torch.randn(x.shape, generator=g)
    s_small, s_big = float(ssim(x, small)), float(ssim(x, big))
    assert 1.0 > s_small > s_big
    assert float(ssim(small, x)) == pytest.approx(s_small, abs=1e-12)
    assert psnr(x, small).shape == (1,) and ssim(np.asarray(x), np.asarray(small)).shape == (1,)


def test_leading_axes_are_kept_and_bad_shapes_refused():
    x = torch.rand(2, 3, 3, 16, 16)  # (batch, horizon, C, H, W)
    assert psnr(x, x * 0.9).shape == (2, 3) and ssim(x, x * 0.9).shape == (2, 3)
    with pytest.raises(ValueError, match="one shape"):
        psnr(x, x[:, :2])
    with pytest.raises(ValueError, match="window"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
