"""Checkpoints: ``<run>/step_<N>/`` written atomically (temp dir + rename), loadable with no Hydra.

Layout of one step folder:
  meta.json               policy name, policy config, feature spec, step, format version
  config.yaml             the resolved training config (for humans and for ``resume``)
  model.safetensors       policy weights (without normalizer/tokenizer buffers)
  normalizer.safetensors  the fitted Normalizer buffers
  tokenizer.safetensors   the fitted ActionTokenizer buffers (absent if the policy has none)
  ema.safetensors         the EMA of the whole policy state (what evaluation uses by default)
  train_state.pt          optimizer, LR schedule, EMA bookkeeping, RNG states, step
``<run>/last`` names the newest complete step folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from robopolicy import registry
from robopolicy.config_utils import from_dict, to_dict
from robopolicy.types import FeatureSpec

FORMAT_VERSION = 1
_SPLIT_PREFIXES = {"normalizer": "normalizer.", "tokenizer": "tokenizer."}


def _split_state(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    parts: dict[str, dict[str, torch.Tensor]] = {"model": {}, "normalizer": {}, "tokenizer": {}}
    for k, v in state.items():
        part = next((p for p, pre in _SPLIT_PREFIXES.items() if k.startswith(pre)), "model")
        parts[part][k] = v.detach().cpu().contiguous()
    return parts


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage: clone tensors that alias each other.
    out, seen = {}, set()
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        ptr = v.untyped_storage().data_ptr() if v.numel() else None
        if ptr is not None and ptr in seen:
            v = v.clone()
        seen.add(ptr)
        out[k] = v
    return out


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    policy: torch.nn.Module,
    ema_state: dict[str, torch.Tensor] | None,
    train_state: dict[str, Any] | None,
    train_config: dict | None = None,
    keep_last: int = 3,
) -> Path:
    """Write ``run_dir/step_<step>`` atomically and point ``run_dir/last`` at it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / f"step_{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp_step_{step:08d}_", dir=run_dir))
    try:
        parts = _split_state(_contiguous(policy.state_dict()))
        for name, tensors in parts.items():
            if tensors or name != "tokenizer":
                save_file(tensors, str(tmp / f"{name}.safetensors"))
        if ema_state is not None:
            save_file(_contiguous(ema_state), str(tmp / "ema.safetensors"))
        meta = {
            "format_version": FORMAT_VERSION,
            "policy": policy.registry_name,
            "policy_config": to_dict(policy.config),
            "features": policy.features.to_dict(),
            "step": step,
            **getattr(policy, "checkpoint_meta", {}),  # e.g. {"kind": "world_model"}
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if train_config is not None:
            from omegaconf import OmegaConf

            (tmp / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(train_config)))
        if train_state is not None:
            torch.save(train_state, tmp / "train_state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_atomic(run_dir / "last", final.name + "\n")
    _prune(run_dir, keep_last)
    return final


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _prune(run_dir: Path, keep_last: int) -> None:
    steps = sorted(p for p in run_dir.glob("step_*") if p.is_dir())
    for old in steps[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in run_dir.glob(".tmp_step_*"):  # left by a run killed mid-write
        shutil.rmtree(stale, ignore_errors=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """A step folder, or a run folder (-> its ``last`` step). Errors name what is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path {path} does not exist")
    if (path / "meta.json").exists():
        return path
    last = path / "last"
    if last.exists():
        step_dir = path / last.read_text().strip()
        if (step_dir / "meta.json").exists():
            return step_dir
        raise FileNotFoundError(f"{last} points to {step_dir}, which is not a complete checkpoint")
    steps = sorted(p for p in path.glob("step_*") if (p / "meta.json").exists())
    if steps:
        return steps[-1]
    raise FileNotFoundError(f"{path} holds no checkpoint (no meta.json, no 'last', no step_* folder)")


def load_train_config(step_dir: Path) -> dict[str, Any]:
    """The training config saved with a checkpoint (its env, obs, image_size, ...), or {} for a
    step folder written without one."""
    from omegaconf import OmegaConf

    path = Path(step_dir) / "config.yaml"
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True) if path.is_file() else {}


def load_state(step_dir: Path, use_ema: bool = True) -> dict[str, torch.Tensor]:
    if use_ema and (step_dir / "ema.safetensors").exists():
        return load_file(str(step_dir / "ema.safetensors"))
    state: dict[str, torch.Tensor] = {}
    for name in ("model", "normalizer", "tokenizer"):
        f = step_dir / f"{name}.safetensors"
        if f.exists():
            state.update(load_file(str(f)))
        elif name == "model":
            raise FileNotFoundError(f"{f} is missing")
    return state


def _merge(base: dict, overrides: dict, where: str) -> dict:
    out = dict(base)
    for k, v in overrides.items():
        if k not in base:
            raise ValueError(f"{where}: unknown policy config key {k!r}; valid keys: {sorted(base)}")
        out[k] = _merge(base[k], v, f"{where}.{k}") if isinstance(v, dict) and isinstance(base[k], dict) else v
    return out


def load_policy(path: str | Path, use_ema: bool = True, device: str | torch.device = "cpu",
                overrides: dict[str, Any] | None = None):
    """Load a policy from a checkpoint with no Hydra and no original config file.

    ``overrides``: policy config fields replaced before the policy is built, nested as the config
    is (e.g. ``{"decode_rounds": 4}``); meant for inference settings that change no weights."""
    step_dir = resolve_checkpoint(path)
    try:
        meta = json.loads((step_dir / "meta.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{step_dir / 'meta.json'} is not valid JSON: {e}") from e
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{step_dir}: checkpoint format {meta.get('format_version')} != {FORMAT_VERSION}")
    if meta.get("kind", "policy") != "policy":
        raise ValueError(f"{step_dir} holds a {meta['kind']}, not a policy (a world model loads with "
                         f"robopolicy.load_world_model)")
    cls = registry.get("policy", meta["policy"])
    config = from_dict(cls.config_class, _merge(meta["policy_config"], dict(overrides or {}), "policy_overrides"))
    features = FeatureSpec.from_dict(meta["features"])
    policy = cls(config, features, None)
    state = load_state(step_dir, use_ema)
    missing, unexpected = policy.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{step_dir}: weights do not match policy {meta['policy']!r}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return policy.to(device).eval()
