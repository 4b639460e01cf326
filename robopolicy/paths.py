"""Folder names derived from suite names: run folders, the recorder's default dataset folder."""

from __future__ import annotations

import re


def slug(text: str) -> str:
    """'metaworld/mt1/push-v3' -> 'metaworld_mt1_push-v3' (safe as a folder name)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def default_dataset_path(env: str, obs: str) -> str:
    """The recorder's (and the trainer's) dataset folder for a suite and an observation modality."""
    return f"datasets/{slug(env)}_{obs}"
