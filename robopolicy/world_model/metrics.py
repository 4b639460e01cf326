"""Fidelity of imagined frames: PSNR and SSIM, per prediction horizon, and a real | imagined strip.

* ``psnr(a, b)``: 10 log10(range^2 / MSE) per image over (C, H, W); ``inf`` for identical images.
* ``ssim(a, b)``: Wang et al. 2004 structural similarity, Gaussian window (11, sigma 1.5), K1 0.01,
  K2 0.03, per channel over the window positions that fit inside the image ("valid"), averaged over
  positions and channels; 1.0 for identical images.
* ``image_fidelity(model, episodes, horizon)``: open-loop imagination from real histories of held-out
  episodes (``image_model.imagine_from_history``), PSNR/SSIM of step h's imagined frame against the
  real one, averaged over start frames, for h = 1..horizon.
* ``save_strip(real, imagined, path)``: a PNG with the real frames on the top row and the imagined
  ones under them (Pillow).

Images are (..., C, H, W) tensors or arrays: uint8 (range 255) or float (range ``data_range``, 1.0
by default).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _as_float(x, data_range: float | None) -> tuple[torch.Tensor, float]:
    t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    rng = data_range if data_range is not None else (255.0 if t.dtype == torch.uint8 else 1.0)
    return t.to(torch.float64), float(rng)


def _pair(a, b, data_range):
    a, rng = _as_float(a, data_range)
    b, _ = _as_float(b, data_range)
    if a.shape != b.shape or a.dim() < 3:
        raise ValueError(f"psnr/ssim need two (..., C, H, W) images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a, b, rng


def psnr(a, b, data_range: float | None = None) -> torch.Tensor:
    """PSNR in dB of each image pair (leading axes kept; (C, H, W) reduced); inf where identical."""
    a, b, rng = _pair(a, b, data_range)
    mse = ((a - b) ** 2).mean(dim=(-3, -2, -1))
    return 10 * torch.log10(rng**2 / mse)  # mse 0 -> inf


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a, b, data_range: float | None = None, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of each image pair (leading axes kept); see the module docstring."""
    a, b, rng = _pair(a, b, data_range)
    lead, (c, h, w) = a.shape[:-3], a.shape[-3:]
    if h < window or w < window:
        raise ValueError(f"ssim: images of {h}x{w} are smaller than the {window}x{window} window")
    x, y = a.reshape(-1, c, h, w), b.reshape(-1, c, h, w)
    k = _gaussian_window(window, sigma).expand(c, 1, window, window).contiguous()

    def filt(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, k, groups=c)

    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx * mx, filt(y * y) - my * my, filt(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return smap.mean(dim=(-3, -2, -1)).reshape(lead)


def valid_starts(episodes, n_history: int, horizon: int) -> np.ndarray:
    """Rows t with ``n_history - 1`` frames before them and ``horizon`` after them in their episode."""
    rows = [np.arange(a + n_history - 1, b - horizon) for a, b in episodes.bounds]
    return np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


def image_fidelity(model, episodes, horizon: int, n_starts: int = 64, seed: int = 0,
                   batch_size: int = 64) -> dict:
    """PSNR / SSIM per horizon (1..``horizon``) of open-loop imagined frames against the real ones,
    over up to ``n_starts`` start frames drawn (seeded) from ``episodes`` (use held-out episodes).
    Returns ``{"horizon": [1..H], "psnr": [...], "ssim": [...], "n_starts": n, "starts": rows,
    "first": (real, imagined)}``, ``first`` being the first start's (H, C, H, W) uint8 frames for
    ``save_strip``."""
    from robopolicy.world_model.image_model import imagine_from_history

    if horizon < 1:
        raise ValueError(f"image_fidelity: horizon must be >= 1, got {horizon}")
    pool = valid_starts(episodes, model.T, horizon)
    if len(pool) == 0:
        raise ValueError(f"image_fidelity: no episode is long enough for n_history={model.T} and horizon={horizon}")
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.choice(pool, size=min(n_starts, len(pool)), replace=False))
    gen = torch.Generator(device=model._device()).manual_seed(seed)
    p, s, first = [], [], None
    for i in range(0, len(starts), batch_size):
        imagined, real = imagine_from_history(model, episodes, starts[i: i + batch_size], horizon, generator=gen)
        p.append(psnr(real, imagined))
        s.append(ssim(real, imagined))
        if first is None:
            first = (real[0], imagined[0])
    p_all, s_all = torch.cat(p), torch.cat(s)  # (n, H)
    # an exact frame gives inf PSNR: average the finite MSE-equivalent instead of inf
    mean_psnr = [_mean_psnr(p_all[:, h]) for h in range(horizon)]
    return {"horizon": list(range(1, horizon + 1)), "psnr": mean_psnr,
            "ssim": [float(v) for v in s_all.mean(0)], "n_starts": int(len(starts)),
            "starts": starts.tolist(), "first": first}


def _mean_psnr(values: torch.Tensor) -> float:
    """PSNR of the mean MSE (data range fixed), so one exact frame does not make the mean inf."""
    mse = (10 ** (-values / 10)).mean()  # MSE / range^2 per image, averaged
    return float("inf") if mse == 0 else float(-10 * math.log10(float(mse)))


def save_strip(real, imagined, path: str | Path, gap: int = 2) -> Path:
    """Write a PNG: the real frames (T, C, H, W) on the top row, the imagined ones below, uint8 or
    float in [0, 1], separated by ``gap`` white pixels."""
    from PIL import Image

    def to_u8(x) -> np.ndarray:
        a = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
        if a.dtype != np.uint8:
            a = np.clip(np.rint(a.astype(np.float64) * 255), 0, 255).astype(np.uint8)
        return a

    r, m = to_u8(real), to_u8(imagined)
    if r.shape != m.shape or r.ndim != 4:
        raise ValueError(f"save_strip: real and imagined must both be (T, C, H, W), got {r.shape} and {m.shape}")
    n, c, h, w = r.shape
    if c not in (1, 3):
        raise ValueError(f"save_strip: frames need 1 or 3 channels, got {c}")
    canvas = np.full((2 * h + gap, n * w + (n - 1) * gap, 3), 255, dtype=np.uint8)
    for row, frames in enumerate((r, m)):
        for i in range(n):
            y, x = row * (h + gap), i * (w + gap)
            canvas[y: y + h, x: x + w] = np.repeat(frames[i], 3 // c, axis=0).transpose(1, 2, 0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path
