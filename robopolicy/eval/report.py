"""Presenting evaluation results: a markdown table, a bar plot with CIs, eval_info.json."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def results_table(result: dict[str, Any]) -> str:
    """Markdown table: one row per task plus the multi-task average."""
    lines = [
        "| task | success | 95% CI | mean length | episodes |",
        "|---|---:|---:|---:|---:|",
    ]
    for task, r in result["tasks"].items():
        lo, hi = r["ci95"]
        lines.append(f"| {task} | {r['success_rate']:.1%} ({r['successes']}/{r['episodes']}) | "
                     f"{lo:.1%} - {hi:.1%} | {r['mean_length']:.1f} | {r['episodes']} |")
    if len(result["tasks"]) > 1:
        lo, hi = result["ci95"]
        lines.append(f"| **average ({len(result['tasks'])} tasks)** | {result['success_rate']:.1%} | "
                     f"{lo:.1%} - {hi:.1%} | {result['mean_length']:.1f} | {result['episodes']} |")
    return "\n".join(lines)


def results_markdown(result: dict[str, Any]) -> str:
    """results.md: the table under a line saying how it was measured."""
    lat = result["latency"]
    kwargs = f" {result['scheduler_kwargs']}" if result["scheduler_kwargs"] else ""
    timing = (f"inference {1000 * lat['mean_s']:.1f} ms mean, {1000 * lat['p95_s']:.1f} ms p95 per batch of "
              f"{result['n_envs']}" if lat.get("calls") else "inference not timed")
    perturb = ""
    if result.get("perturb_step"):
        perturb = (f"; object displaced once at step {result['perturb_step']} "
                   f"({result.get('perturbed_episodes', 0)} episodes still running then)")
    unc = result.get("uncertainty") or {}
    unc_line = ""
    if unc.get("auroc_mean") is not None:
        unc_line = (f"\nUncertainty predicts failure: AUROC {unc['auroc_mean']:.3f} (episode mean), "
                    f"{unc['auroc_max']:.3f} (episode max) over {unc['episodes']} episodes.\n")
    return (f"# Evaluation: {result['suite']}\n\n"
            f"{time.strftime('%Y-%m-%d %H:%M')}; obs {result['obs']}; scheduler {result['scheduler']}{kwargs}; "
            f"{result['n_envs']} envs; {result['seed_split']} initial states; policy seed {result['seed']}; "
            f"{timing}{perturb}\n\n{results_table(result)}\n{unc_line}")


def plot_success(result: dict[str, Any], path: str | Path) -> Path:
    """Bar chart of per-task success with 95% Wilson intervals (Agg canvas: no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = list(result["tasks"])
    rates = [result["tasks"][t]["success_rate"] for t in tasks]
    lows = [r - result["tasks"][t]["ci95"][0] for t, r in zip(tasks, rates)]
    highs = [result["tasks"][t]["ci95"][1] - r for t, r in zip(tasks, rates)]
    if len(tasks) > 1:
        tasks.append("average")
        rates.append(result["success_rate"])
        lows.append(result["success_rate"] - result["ci95"][0])
        highs.append(result["ci95"][1] - result["success_rate"])
    fig = Figure(figsize=(max(4.0, 0.45 * len(tasks) + 1.5), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = ["tab:blue"] * len(result["tasks"]) + (["tab:orange"] if len(tasks) > len(result["tasks"]) else [])
    ax.bar(range(len(tasks)), rates, yerr=[lows, highs], capsize=3, color=colors)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=60 if len(tasks) > 4 else 0, ha="right" if len(tasks) > 4 else "center",
                       fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (95% Wilson CI)")
    ax.set_title(f"{result['suite']}: {result['episodes']} episodes, scheduler {result['scheduler']}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=100)
    os.replace(tmp, path)
    return path


def write_json(obj: Any, path: str | Path) -> Path:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
