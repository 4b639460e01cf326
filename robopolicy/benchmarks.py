"""Writing benchmark tables into docs/benchmarks.md: each script owns one ``## <title>`` section and
replaces it whole, with the exact command, the machine and the date, so every number is rerunnable."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
_HEADER = "# Benchmarks\n\nEvery table below is written by the script named under it; rerun the command to reproduce.\n"


def machine() -> str:
    """CPU model and core count (plus the torch version), e.g. 'AMD EPYC ... x2, torch 2.13.0'."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import torch

        tv = f", torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:  # pragma: no cover
        tv = ""
    return f"{model}, {os.cpu_count()} cores{tv}"


def command() -> str:
    """The command line that ran this script, as a user would type it."""
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def provenance() -> str:
    return f"Command: `{command()}`  \nMachine: {machine()}  \nDate: {_dt.date.today().isoformat()}\n"


def parse_overrides(items: list[str], flag: str) -> dict[str, Any]:
    """``["field=value", ...]`` from a script's command line -> ``{field: YAML value}`` (eval-time
    policy overrides); anything without ``=`` is refused, naming ``flag``."""
    import yaml

    bad = [o for o in items if "=" not in o]
    if bad:
        raise SystemExit(f"{flag} takes FIELD=VALUE pairs, got {bad}")
    return {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in items)}


def demonstration_batch(policy, dataset: str | Path, samples: int, generator) -> dict[str, Any]:
    """A batch of ``samples`` random frames of a dataset, shaped for ``policy`` (its observation
    and action windows, its cameras, the instruction when it uses language): for the diagnostic
    scripts that compare a trained policy's inference with the demonstrations."""
    import torch

    from robopolicy.data import LeRobotDataset

    ds = LeRobotDataset(dataset, delta_timestamps=policy.delta_timestamps(), camera_keys=policy.features.image_keys)
    items = [ds[i] for i in torch.randint(0, len(ds), (samples,), generator=generator).tolist()]
    batch: dict[str, Any] = {k: torch.stack([it[k] for it in items]) for k in items[0] if isinstance(items[0][k], torch.Tensor)}
    if policy.features.use_language:
        batch["task"] = [it["task"] for it in items]
    return batch


def trace_inputs(checkpoint: str | Path, policy_class: str, dataset: str | Path, samples: int, generator):
    """(policy, batch, actions) for a diagnostic trace script: the checkpoint's policy (EMA, eval
    mode), which must be a ``policy_class``, and ``samples`` random frames of ``dataset`` with their
    demonstrated action windows (``batch_actions``); frames are drawn with ``generator``."""
    import robopolicy

    policy = robopolicy.load_policy(checkpoint).eval()
    if type(policy).__name__ != policy_class:
        raise SystemExit(f"{checkpoint} holds a {type(policy).__name__}, not a {policy_class}")
    batch = demonstration_batch(policy, dataset, samples, generator)
    actions, _ = policy.batch_actions(batch)
    return policy, batch, actions


# The policy-config fields that decide how each family turns an observation into actions at
# evaluation time (dotted paths into the saved policy config): what a results table must state.
INFERENCE_FIELDS: dict[str, tuple[str, ...]] = {
    "diffusion": ("noise.sampler", "noise.num_inference_steps", "n_action_steps"),
    "sdp": ("steps_per_act", "n_action_steps"),
    "ebt": ("inference_steps", "max_inference_steps", "adaptive", "stop_tol", "n_action_steps"),
    "ddvla": ("decode_mode", "decode_rounds", "remask", "remask_threshold", "temperature", "n_action_steps"),
}


def inference_config(policy: str, policy_cfg: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``INFERENCE_FIELDS`` of a saved policy config (``config.yaml``'s ``policy``), after
    eval-time ``overrides`` (field -> value, as ``policy_overrides``); keys are the last path part."""
    fields = INFERENCE_FIELDS.get(policy, ())
    out: dict[str, Any] = {}
    for path in fields:
        node: Any = policy_cfg
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            out[path.split(".")[-1]] = node
    names = {f.split(".")[-1] for f in fields}
    out.update({k.split(".")[-1]: v for k, v in (overrides or {}).items() if k.split(".")[-1] in names})
    return out


def inference_text(policy: str, cfg: dict[str, Any] | None) -> str:
    """One table cell saying how ``policy`` produced its actions, from ``inference_config``'s dict
    (plus an optional ``threshold_calibrated_on`` for EBT); "not recorded" without one."""
    if not cfg:
        return "not recorded"
    n = cfg.get("n_action_steps")
    per = f"{n} action{'s' if n != 1 else ''} executed per policy call" if n is not None else ""
    if policy == "diffusion":
        text = f"{str(cfg.get('sampler', '?')).upper()}-{cfg.get('num_inference_steps')} chunks, {per}"
    elif policy == "sdp":
        k = cfg.get("steps_per_act")
        text = f"streaming buffer, {k} denoising step{'s' if k != 1 else ''} and {per}"
    elif policy == "ebt":
        steps = cfg.get("inference_steps")
        if cfg.get("adaptive"):
            where = cfg.get("threshold_calibrated_on")
            text = (f"energy descent until a step moves the chunk <= {cfg.get('stop_tol')} RMS: at most {steps} steps, "
                    f"up to {cfg.get('max_inference_steps')} while the energy is above the threshold calibrated on "
                    f"{where or 'the checkpoint'}; {per}")
        else:
            text = f"energy descent, {steps} steps; {per}"
    elif policy == "ddvla":
        r = cfg.get("decode_rounds")
        if cfg.get("decode_mode") == "autoregressive":
            text = f"autoregressive decoding; {per}"
        else:
            remask = (f"remasking below p={cfg.get('remask_threshold')}" if cfg.get("remask") else "no remasking")
            text = f"parallel decoding, {r} round{'s' if r != 1 else ''}, {remask}; {per}"
        if cfg.get("temperature"):
            text += f", temperature {cfg['temperature']}"
    else:
        text = ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "threshold_calibrated_on")
    return text


def load_json(path: Path) -> Any:
    """A benchmark stage's cached result, or None when that stage has not run."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def save_json(obj: Any, path: Path) -> None:
    """Cache a stage's result atomically (a killed run never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def write_section(title: str, body: str, doc: Path | None = None) -> Path:
    """Replace (or append) the ``## title`` section of docs/benchmarks.md, atomically."""
    import fcntl

    doc = Path(doc) if doc is not None else DOC
    doc.parent.mkdir(parents=True, exist_ok=True)
    section = f"## {title}\n\n{body.strip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    # Several benchmarks may finish at once: read-modify-write under one lock so none is lost.
    with open(doc.with_suffix(".md.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = doc.read_text() if doc.exists() else _HEADER
        if pattern.search(text):
            text = pattern.sub(lambda _m: section, text, count=1)
        else:
            text = text.rstrip("\n") + "\n\n" + section
        tmp = doc.with_suffix(f".md.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, doc)
    return doc


def synthetic_stats(features) -> dict[str, dict[str, Any]]:
    """Dataset statistics for a policy built without a dataset (timing with random weights): state
    and actions in [-1, 1], images in [0, 1]. ``features`` is a ``robopolicy.types.FeatureSpec``."""
    import numpy as np

    def entry(shape, lo, hi):
        lo, hi = np.full(shape, lo, np.float32), np.full(shape, hi, np.float32)
        return {"min": lo, "max": hi, "mean": (lo + hi) / 2, "std": (hi - lo) / 4, "q01": lo, "q99": hi}

    stats = {"action": entry((features.action_dim,), -1, 1)}
    if features.state_dim:
        stats["observation.state"] = entry((features.state_dim,), -1, 1)
    for key in features.image_keys:
        stats[key] = entry((3, 1, 1), 0, 1)
    return stats


def interleaved_ms(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[str, float]:
    """Median wall time (ms) of each callable over ``reps`` calls after ``warmup`` untimed ones;
    the callables take turns (round-robin), so load from other jobs hits each of them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def median_ms(fn: Callable[[], Any], reps: int, warmup: int) -> float:
    """Median wall time (ms) of ``fn`` over ``reps`` calls after ``warmup`` untimed ones."""
    return interleaved_ms({"fn": fn}, reps, warmup)["fn"]
