"""A tiny pushblock world model and Diffusion Policy, saved as checkpoints, for the refinement tests:
play data of 2 episodes (recorded in-process), an untrained small state world model, an untrained
tiny Diffusion Policy whose demonstration dataset is the same play data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

TINY_WM = dict(hidden_dim=16, depth=1, head_hidden_dim=8, head_depth=1, noise_embed_dim=8)
TINY_DP = {"down_dims": [16, 32], "kernel_size": 3, "n_groups": 4, "step_embed_dim": 16, "horizon": 8,
           "n_action_steps": 4, "noise": {"num_train_timesteps": 20, "num_inference_steps": 4}}


def make_checkpoints(root: Path) -> dict[str, Path]:
    from robopolicy.config_utils import from_dict
    from robopolicy.data import LeRobotDataset
    from robopolicy.policies.diffusion.config import DiffusionConfig
    from robopolicy.train.checkpoint import save_checkpoint
    from robopolicy.train.run import build_policy
    from robopolicy.world_model.config import StateWorldModelConfig
    from robopolicy.world_model.data import load_episodes
    from robopolicy.world_model.play import record_play_dataset
    from robopolicy.world_model.state_model import StateWorldModel

    torch.manual_seed(0)
    play = root / "play"
    record_play_dataset("pushblock", play, 2, num_workers=0, progress=False, noise_levels=(0.0, 0.3))
    wm = StateWorldModel.from_episodes(StateWorldModelConfig(**TINY_WM), load_episodes(play))
    wm_run = root / "ckpt" / "wm"
    save_checkpoint(wm_run, 1, wm, None, None, {"env": "pushblock", "obs": "state"})
    ds = LeRobotDataset(play, camera_keys=[])
    policy = build_policy("diffusion", from_dict(DiffusionConfig, TINY_DP), ds.feature_spec(), ds.training_stats())
    policy_run = root / "ckpt" / "policy"
    save_checkpoint(policy_run, 5, policy, policy.state_dict(), None,
                    {"env": "pushblock", "obs": "state", "dataset": str(play), "policy_name": "diffusion"})
    return {"play": play, "wm": wm_run, "policy": policy_run}


def tree_hash(folder: Path) -> str:
    """One hash of every file's relative path and bytes under ``folder``."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()
