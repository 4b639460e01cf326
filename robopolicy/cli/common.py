"""Small pieces the entry points share: device choice, dataset paths, suite construction."""

from __future__ import annotations

import re

import torch


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def slug(text: str) -> str:
    """'metaworld/mt1/push-v3' -> 'metaworld_mt1_push-v3' (safe as a folder name)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def default_dataset_path(env: str, obs: str) -> str:
    return f"datasets/{slug(env)}_{obs}"
