"""Action-conditioned diffusion world models that policies can be run inside.

* ``play``: noisy-expert play data with rewards (``next.reward`` / ``next.success`` / ``next.done``).
* ``StateWorldModel``: EDM diffusion over the next state(s) given past states and actions, with
  success / reward / termination heads (``objective="regression"``: the deterministic MLP baseline).
* ``ImageWorldModel``: one DiT denoising the next camera frame (past frames stacked on channels, as
  DIAMOND) and the next state together (EDM), with the same heads; ``metrics``: PSNR / SSIM per
  horizon and real | imagined strips.
* ``WorldModelSuite``: the model behind the suite / vector-env API the evaluator uses.
* ``load_world_model(path)``; ``robopolicy-train-wm`` trains one.

Exports are resolved lazily so the recorder's worker processes can import ``play`` without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PlaySpec": "robopolicy.world_model.play",
    "record_play_dataset": "robopolicy.world_model.play",
    "StateWorldModel": "robopolicy.world_model.state_model",
    "StateWorldModelConfig": "robopolicy.world_model.config",
    "ImageWorldModel": "robopolicy.world_model.image_model",
    "ImageWorldModelConfig": "robopolicy.world_model.config",
    "WorldModel": "robopolicy.world_model.base",
    "WorldModelSuite": "robopolicy.world_model.env",
    "WorldModelVectorEnv": "robopolicy.world_model.env",
    "load_world_model": "robopolicy.world_model.checkpoint",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'robopolicy.world_model' has no attribute {name!r}")
