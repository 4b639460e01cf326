"""The torch device a config's ``device`` field names."""

from __future__ import annotations

import torch


def pick_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU; any other name is passed to torch as it is."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
