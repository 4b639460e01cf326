"""Co-training on action-free (video-only) episodes: extra datasets whose frames are used and whose
actions are not.

``with_action_free(dataset, folders, policy)`` returns one map-style dataset over the policy's
training windows of ``dataset`` (actions valid) followed by those of every folder (actions
absent or ignored). Every item carries ``action_is_valid`` (a bool scalar; the batch gets (B,)):
a policy that learns from such samples (``learns_from_action_free``, e.g. PAD) masks its action
loss where it is False and keeps its other losses (PAD's future-frame loss). An action-free item's
``action`` is zeros marked as padding, so it has the shape of the others and carries no value.
An action-free folder needs the observation features the policy reads (same state width, the same
cameras at the same size, the same fps); an ``action`` feature is optional.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from robopolicy.types import ACTION_KEY, ACTION_PAD_KEY, ACTION_VALID_KEY


class ActionFlagged(torch.utils.data.Dataset):
    """Items of ``dataset`` with ``action_is_valid`` set and only the given ``keys`` (those all
    parts share, so that a batch of both kinds collates); action-free items get zero actions, all
    marked as padding."""

    def __init__(self, dataset, valid: bool, horizon: int, action_dim: int, keys: Sequence[str] | None = None):
        self.dataset, self.valid = dataset, bool(valid)
        self.horizon, self.action_dim = horizon, action_dim
        self.keys = None if keys is None else list(keys)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.dataset[i]
        if not self.valid:
            item[ACTION_KEY] = torch.zeros(self.horizon, self.action_dim)
            item[ACTION_PAD_KEY] = torch.ones(self.horizon, dtype=torch.bool)
        if self.keys is not None:
            item = {k: item[k] for k in self.keys}
        item[ACTION_VALID_KEY] = torch.tensor(self.valid)
        return item


def _check_compatible(extra, features, root: Path) -> None:
    spec = extra.meta.features
    fps = float(extra.meta.fps)
    if abs(fps - features.fps) > 1e-6:
        raise ValueError(f"action-free dataset {root}: fps {fps} differs from the training data's {features.fps}")
    if features.state_dim is not None:
        state = spec.get("observation.state")
        width = None if state is None else int(torch.tensor(state["shape"]).prod())
        if width != features.state_dim:
            raise ValueError(f"action-free dataset {root}: observation.state width {width}, the policy needs {features.state_dim}")
    for key, shape in zip(features.image_keys, features.cameras.values()):
        if key not in extra.meta.camera_keys:
            raise ValueError(f"action-free dataset {root}: no camera {key!r} (has {extra.meta.camera_keys})")
        if extra._chw(key) != tuple(shape):
            raise ValueError(f"action-free dataset {root}: camera {key!r} is {extra._chw(key)}, the policy needs {tuple(shape)}")


def with_action_free(dataset, folders: Sequence[str | Path], policy) -> torch.utils.data.Dataset:
    """``dataset`` (the demonstrations, with actions) followed by the action-free ``folders``,
    windows as ``policy.delta_timestamps()`` asks; see the module docstring."""
    from robopolicy.data.dataset import LeRobotDataset

    if not getattr(policy, "learns_from_action_free", False):
        raise ValueError(f"policy {type(policy).__name__} cannot learn from action-free episodes "
                         f"(only families with learns_from_action_free, e.g. pad); drop action_free_datasets")
    c, features = policy.config, policy.features
    deltas = policy.delta_timestamps()
    extras = []
    for folder in folders:
        root = Path(folder)
        if not (root / "meta" / "info.json").is_file():
            raise FileNotFoundError(f"action-free dataset {root}: no meta/info.json (record it first, e.g. "
                                    f"robopolicy-record ... output={root})")
        probe = LeRobotDataset(root, camera_keys=[])
        _check_compatible(probe, features, root)
        own = {k: v for k, v in deltas.items() if k != ACTION_KEY or ACTION_KEY in probe.meta.features}
        extras.append(ActionFlagged(LeRobotDataset(root, delta_timestamps=own, camera_keys=features.image_keys),
                                    False, c.horizon, features.action_dim))
    # Keep the keys every part has; those the policy reads must be among them.
    keys = set(dataset[0])
    for extra in extras:
        keys &= set(extra[0])
    needed = {k for key in deltas for k in (key, f"{key}_is_pad")} | ({"task"} if features.use_language else set())
    lost = sorted(needed - keys)
    if lost:
        raise ValueError(f"action-free co-training: {lost} are missing from some dataset, and the policy reads them")
    keys = sorted(keys - {ACTION_VALID_KEY})
    parts = [ActionFlagged(dataset, True, c.horizon, features.action_dim, keys)]
    parts += [ActionFlagged(e.dataset, False, c.horizon, features.action_dim, keys) for e in extras]
    return torch.utils.data.ConcatDataset(parts)
