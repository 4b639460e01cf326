"""scripts/bench_pad.py: the frame metrics (PSNR, SSIM) on cases with known values."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_pad.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_pad", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_pad"] = mod  # its dataclass looks its module up there
    spec.loader.exec_module(mod)
    return mod


def test_psnr_known_values(bench):
    x = torch.zeros(2, 3, 16, 16)
    y = x + 0.1  # mse 0.01 -> 20 dB
    torch.testing.assert_close(bench.psnr(x, y), torch.full((2,), 20.0))
    assert bench.psnr(x, x).min() >= 99


def test_ssim_identity_constant_images_and_noise(bench):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 24, generator=g)
    torch.testing.assert_close(bench.ssim(x, x), torch.ones(2))
    # constant images a and b: no variance, SSIM = (2ab + c1) / (a^2 + b^2 + c1)
    a, b, c1 = 0.3, 0.6, 0.01**2
    got = bench.ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b))
    torch.testing.assert_close(got, torch.tensor([(2 * a * b + c1) / (a * a + b * b + c1)]))
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    noisier = (x + 0.5 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert (bench.ssim(x, noisier) < bench.ssim(x, noisy)).all() and (bench.ssim(x, noisy) < 1).all()
