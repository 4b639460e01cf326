"""Folder names derived from suite names: run folders, the recorder's default dataset folder, a
checkpoint's results folders."""

from __future__ import annotations

import re
from pathlib import Path


def slug(text: str) -> str:
    """'metaworld/mt1/push-v3' -> 'metaworld_mt1_push-v3' (safe as a folder name)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def default_dataset_path(env: str, obs: str) -> str:
    """The recorder's (and the trainer's) dataset folder for a suite and an observation modality."""
    return f"datasets/{slug(env)}_{obs}"


RESULT_KINDS = ("eval", "deploy")


def results_dir(step_dir: str | Path, kind: str, suite: str, tag: str | None = None) -> Path:
    """Where a checkpoint's results go (the one layout): ``<run>/step_<N>/eval/<suite slug>[_<tag>]``
    for robopolicy-eval, the training run's final evaluation and sweeps; ``<run>/step_<N>/deploy/
    <suite slug>[_<tag>]`` for robopolicy-deploy."""
    if kind not in RESULT_KINDS:
        raise ValueError(f"results_dir: kind must be one of {RESULT_KINDS}, got {kind!r}")
    name = slug(suite) + (f"_{slug(tag)}" if tag else "")
    if not name:
        raise ValueError(f"results_dir: suite {suite!r} gives an empty folder name")
    return Path(step_dir) / kind / name
