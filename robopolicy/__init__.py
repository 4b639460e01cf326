"""robopolicy: learning robot manipulation policies with diffusion and vision-language-action models."""

__version__ = "0.1.0"


def load_policy(path, use_ema: bool = True, device="cpu"):
    """Load a trained policy from a checkpoint folder (no Hydra, no config file needed)."""
    from robopolicy.train.checkpoint import load_policy as _load

    return _load(path, use_ema=use_ema, device=device)


def load_world_model(path, use_ema: bool = True, device="cpu"):
    """Load a trained world model (``robopolicy-train-wm``) from a checkpoint folder."""
    from robopolicy.world_model.checkpoint import load_world_model as _load

    return _load(path, use_ema=use_ema, device=device)
