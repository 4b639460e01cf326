"""Rollout videos: H.264 mp4 (plays in every browser and viewer), encoded by the dataset code's
PyAV writer."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from robopolicy.data.video import VideoEncoding, encode_frames

# Rollout videos are watched, not random-accessed: H.264 with sparse keyframes, unlike datasets.
ROLLOUT_ENCODING = VideoEncoding(vcodec="libx264", crf=20, g=30, preset="veryfast")


def write_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Encode uint8 (H, W, 3) RGB frames to ``path`` (written atomically: temp file + rename)."""
    path = Path(path)
    if len(frames) == 0:
        raise ValueError(f"write_mp4 {path}: no frames")
    first = np.asarray(frames[0])
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise ValueError(f"write_mp4 {path}: frames must be uint8 (H, W, 3), got {first.dtype} {first.shape}")
    for i, f in enumerate(frames):
        if np.shape(f) != first.shape:
            raise ValueError(f"write_mp4 {path}: frame {i} has shape {np.shape(f)}, the first has {first.shape}")
    video = np.stack(frames)
    h, w = first.shape[:2]
    if h % 2 or w % 2:  # yuv420p needs even sizes: pad by edge replication
        video = np.pad(video, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    encode_frames(video, tmp, fps, ROLLOUT_ENCODING)
    os.replace(tmp, path)
    return path
