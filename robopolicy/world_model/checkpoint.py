"""``load_world_model(path)``: a trained world model from its checkpoint, with no Hydra.

World-model checkpoints share the policies' layout (``checkpoints/<run>/step_<N>/``: meta.json,
safetensors weights, EMA, normalizer, train state; written by ``train.checkpoint.save_checkpoint``
through the shared Trainer); their meta.json says ``"kind": "world_model"`` and names the model
class registered under the ``world_model`` kind.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from robopolicy import registry
from robopolicy.config_utils import from_dict
from robopolicy.train.checkpoint import load_state, resolve_checkpoint
from robopolicy.types import FeatureSpec


def read_meta(step_dir: Path) -> dict:
    try:
        meta = json.loads((step_dir / "meta.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{step_dir / 'meta.json'} is not valid JSON: {e}") from e
    if meta.get("kind") != "world_model":
        raise ValueError(f"{step_dir} holds a {meta.get('kind', 'policy')} checkpoint, not a world model "
                         f"(train one with robopolicy-train-wm)")
    return meta


def load_world_model(path: str | Path, use_ema: bool = True, device: str | torch.device = "cpu"):
    """Load a world model from a run folder (its newest step) or a step folder."""
    import robopolicy.world_model.state_model  # noqa: F401  (registers the built-in models)
    import robopolicy.world_model.image_model  # noqa: F401

    step_dir = resolve_checkpoint(path)
    meta = read_meta(step_dir)
    cls = registry.get("world_model", meta["policy"])
    model = cls(from_dict(cls.config_class, meta["policy_config"]), FeatureSpec.from_dict(meta["features"]), None)
    missing, unexpected = model.load_state_dict(load_state(step_dir, use_ema), strict=False)
    if missing or unexpected:
        raise ValueError(f"{step_dir}: weights do not match world model {meta['policy']!r}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device).eval()
