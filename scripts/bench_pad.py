"""PAD (Prediction with Action) benchmarks: the issue's comparisons, each written as its own section
of docs/benchmarks.md (unless ``--no-write``).

``--parts`` (any of):

* ``success``: train the PAD variants on the suite with the data and time budget of the existing
  mt10 runs (50 demonstrations per task, corner camera at 64x64, batch 32, ``--minutes`` of
  training on one thread, ``--eval-episodes`` held-out episodes per task) and compare them, per
  task and on average, with the Diffusion Policy and Discrete Diffusion VLA results that
  ``scripts/bench_success.py`` saved for the same suite (results/diffusion_image_<suite>/,
  results/ddvla_image_<suite>/; a column only where its result exists). Variants (``--variants``):
  ``joint`` (PAD), ``action_only`` (the same DiT, ``policy.image_loss_weight=0``: no image tokens),
  ``cotrain`` (PAD + ``--action-free-episodes`` more expert episodes per task, recorded from train
  trials the demonstrations never used, whose actions are dropped). Each variant's result is
  kept in ``--out`` (results/pad_image_<suite>/<variant>.json), so variants can run in separate
  invocations and the table lists every one found.
* ``frames``: the joint checkpoint's predicted future frames against the real ones on held-out
  episodes (expert episodes recorded from the suite's *eval* trials, never trained on):
  PSNR and SSIM per predicted horizon (the checkpoint's ``future_steps``), next to the "nothing
  moves" baseline (the current frame as the prediction), and a picture (current | real future |
  predicted, one row per sample) saved under docs/ and linked from the section.
* ``cost``: inference cost per chunk at batch 1 on the CPU (random weights; cost does not depend
  on them) at mt10's shapes: PAD joint and action-only with their DDIM steps vs Diffusion Policy
  DDIM-10, denoiser evaluations and median latency, taking turns so load hits all alike.

The full mt10 comparison (three 70-minute trainings plus recording) is long:

    python scripts/bench_pad.py --parts success --suite metaworld/mt10 --minutes 70 --steps 6000
    python scripts/bench_pad.py --parts frames cost --suite metaworld/mt10

A seconds-to-minutes check of every path (small model, a single task, nothing written to docs/):

    python scripts/bench_pad.py --check --no-write --out /tmp/pad_bench
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robopolicy.benchmarks import interleaved_ms, provenance, synthetic_stats, write_section
from robopolicy.data.rollout import RolloutSpec, run_episode

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"joint": [], "action_only": ["policy.image_loss_weight=0"], "cotrain": []}
ACTION_FREE_TRIAL_OFFSET = 10_000  # train-split trials far beyond any the demonstrations used
CHECK_OVERRIDES = ["policy.d_model=32", "policy.n_layers=1", "policy.n_heads=2", "policy.encoder.token_dim=32",
                   "policy.noise.num_inference_steps=2", "batch_size=4", "warmup_steps=0"]


# --- data ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OffsetTrials(RolloutSpec):
    """The expert's rollouts from train trials shifted by ``trial_offset`` (new initial states)."""

    trial_offset: int = ACTION_FREE_TRIAL_OFFSET
    """Added to every trial index."""


def offset_episode(spec: OffsetTrials, task: str, trial: int):
    return run_episode(spec, task, trial + spec.trial_offset)


def action_free_dataset(suite: str, episodes: int, image_size: int, workers: int, root: Path) -> Path:
    """Expert episodes of ``suite`` from unused train trials (recorded if missing); the trainer
    uses them without their actions (``action_free_datasets``)."""
    from robopolicy.data import record_dataset
    from robopolicy.paths import slug

    path = root / f"{slug(suite)}_image{image_size}_actionfree{episodes}"
    spec = OffsetTrials(suite, "image", image_size, "train")
    record_dataset(suite, path, episodes=episodes, obs="image", image_size=image_size, num_workers=workers,
                   spec=spec, episode_fn=offset_episode)
    return path


def heldout_dataset(suite: str, episodes: int, image_size: int, workers: int, root: Path) -> Path:
    """Expert episodes from the suite's eval trials (never trained on), for the frame metrics."""
    from robopolicy.data import record_dataset
    from robopolicy.paths import slug

    path = root / f"{slug(suite)}_image{image_size}_heldout{episodes}"
    record_dataset(suite, path, episodes=episodes, obs="image", image_size=image_size, num_workers=workers,
                   seed_split="eval")
    return path


# --- success -------------------------------------------------------------------------------------
def train_cfg(args, variant: str, extra: list[str]):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from robopolicy.cli.configstore import CONFIG_DIR, register_configs
    from robopolicy.paths import slug

    register_configs()
    overrides = ["policy=pad", f"env={args.suite}", "obs=image", f"image_size={args.image_size}",
                 f"episodes={args.episodes}", f"steps={args.steps}", f"eval.episodes={args.eval_episodes}",
                 "eval.videos=1", f"run_name=bench_pad_{variant}_{slug(args.suite)}", f"save_every={args.steps}",
                 "log_every=200", f"batch_size={args.batch_size}", f"num_threads={args.threads}",
                 *VARIANTS[variant], *extra, *args.overrides]
    if args.minutes:
        overrides.append(f"max_minutes={args.minutes}")
    if args.dataset:
        overrides.append(f"dataset={args.dataset}")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return OmegaConf.to_object(cfg), overrides


def run_success(args, out: Path) -> None:
    from robopolicy.train.run import run_training

    out.mkdir(parents=True, exist_ok=True)
    for variant in args.variants:
        extra = []
        if variant == "cotrain":
            folder = action_free_dataset(args.suite, args.action_free_episodes, args.image_size, args.workers, args.data_root)
            extra.append(f"action_free_datasets=['{folder}']")
        cfg, overrides = train_cfg(args, variant, extra)
        res = run_training(cfg, "pad")
        row = {k: res.get(k) for k in ("success_rate", "ci95", "episodes", "mean_length", "train_steps",
                                       "train_minutes", "run_dir")}
        row["tasks"] = {t: {k: v[k] for k in ("success_rate", "ci95", "episodes")} for t, v in res.get("tasks", {}).items()}
        row.update(variant=variant, overrides=overrides, command=provenance())
        (out / f"{variant}.json").write_text(json.dumps(row, indent=2))
        print(f"pad {variant}: success {row['success_rate']:.0%} after {row['train_steps']} steps")


def success_table(args, out: Path) -> str:
    from robopolicy.paths import slug

    cols: dict[str, dict] = {}
    for variant in VARIANTS:
        p = out / f"{variant}.json"
        if p.exists():
            cols[f"PAD {variant.replace('_', '-')}"] = json.loads(p.read_text())
    for family, name in (("diffusion", "Diffusion Policy"), ("ddvla", "Discrete Diffusion VLA")):
        p = ROOT / "results" / f"{family}_image_{slug(args.suite)}" / f"{slug(args.suite)}.json"
        if p.exists():
            cols[name] = json.loads(p.read_text())
    if not any(k.startswith("PAD") for k in cols):
        raise SystemExit(f"no PAD results in {out}: run --parts success first")
    names = list(cols)
    tasks = sorted({t for r in cols.values() for t in r.get("tasks", {})}) or [args.suite]
    lines = ["| task | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for t in tasks:
        cells = [f"{cols[n]['tasks'][t]['success_rate']:.0%}" if t in cols[n].get("tasks", {}) else "not run" for n in names]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines.append("| **average** (95% CI) | " + " | ".join(
        f"**{r['success_rate']:.0%}** ({r['ci95'][0]:.0%}-{r['ci95'][1]:.0%})" for r in cols.values()) + " |")
    lines.append("| train steps (minutes) | " + " | ".join(
        f"{r['train_steps']} ({r['train_minutes']:.0f})" for r in cols.values()) + " |")
    runs = "\n".join(f"- {n}: " + r["command"].strip().replace("  \n", "; ").replace("\n", " ") for n, r in cols.items())
    return ("One policy for all the suite's tasks (text-conditioned when there are several), corner camera + "
            "state, EMA weights, held-out initial "
            "states; PAD samples image and action tokens jointly with its DDIM steps, chunks of "
            "n_action_steps actions. The Diffusion Policy and DDVLA columns are the saved results of "
            "scripts/bench_success.py on the same suite (their commands below).\n\n" + "\n".join(lines)
            + "\n\nRuns:\n" + runs + "\n")


# --- frames --------------------------------------------------------------------------------------
def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image of (N, C, H, W) tensors in [0, 1] (Gaussian window 11, sigma 1.5, the
    constants of Wang et al. 2004), averaged over channels; in float64 (E[x^2] - E[x]^2 cancels)."""
    x, y = x.double(), y.double()
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    w = g[:, None] * g[None, :] / g.sum() ** 2
    c = x.shape[1]
    w = w.expand(c, 1, 11, 11).contiguous()

    def blur(t):
        return torch.nn.functional.conv2d(t, w, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image of (N, C, H, W) tensors in [0, 1]."""
    mse = ((x - y) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1 / mse)


def run_frames(args) -> tuple[str, Path | None]:
    import robopolicy
    from robopolicy.benchmarks import demonstration_batch

    ckpt = args.checkpoint or str(Path("checkpoints") / f"bench_pad_joint_{_slug(args.suite)}")
    policy = robopolicy.load_policy(ckpt).eval()
    if type(policy).__name__ != "PADPolicy" or policy.camera is None:
        raise SystemExit(f"{ckpt} is not a PAD checkpoint that predicts frames")
    data = heldout_dataset(args.suite, args.frame_episodes, args.image_size, args.workers, args.data_root)
    gen = torch.Generator().manual_seed(0)
    batch = demonstration_batch(policy, data, args.frame_samples, gen)
    c = policy.config
    obs, future, pad = policy._split(batch)
    obs = {k: v for k, v in obs.items() if k.startswith("observation") or k == "task"}
    torch.manual_seed(0)
    _, predicted = policy.predict(obs)
    real = (policy._pixels(future) + 1) / 2  # the real frames at the predicted size
    real = real.reshape(predicted.shape)
    current = ((policy._pixels(obs[policy.camera][:, -1:]) + 1) / 2)
    rows = ["| frames ahead | samples | PSNR predicted (dB) | PSNR copy current (dB) | SSIM predicted | SSIM copy current |",
            "|---|---|---|---|---|---|"]
    for f, k in enumerate(c.future_steps):
        keep = ~pad[:, f] if pad is not None else torch.ones(real.shape[0], dtype=torch.bool)
        r, p, cur = real[keep, f], predicted[keep, f], current[keep]
        rows.append(f"| {k} | {int(keep.sum())} | {psnr(p, r).mean():.2f} | {psnr(cur, r).mean():.2f} | "
                    f"{ssim(p, r).mean():.3f} | {ssim(cur, r).mean():.3f} |")
    picture = None
    if not args.no_write:
        from PIL import Image

        n = min(6, real.shape[0])
        strips = [torch.cat([current[i]] + [real[i, f] for f in range(real.shape[1])]
                            + [predicted[i, f] for f in range(real.shape[1])], dim=2) for i in range(n)]
        grid = (torch.cat(strips, dim=1).permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        picture = ROOT / "docs" / f"pad_frames_{_slug(args.suite)}.png"
        picture.parent.mkdir(exist_ok=True)
        Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(picture)
    body = (f"Checkpoint `{ckpt}` (EMA), {args.frame_samples} random frames of {args.frame_episodes} expert "
            f"episodes per task recorded from the suite's eval trials (`{data.name}`); one joint "
            f"sample per frame ({len(policy.sampler.plan())} DDIM steps), frames at {c.image_size}x{c.image_size}. "
            "'copy current' is the baseline that predicts no change. Future frames past an episode's end are left out.\n\n"
            + "\n".join(rows) + "\n")
    if picture is not None:
        body += (f"\nEach row: the current frame | the real future frame(s) | PAD's prediction(s): "
                 f"[{picture.name}]({picture.name})\n")
    return body, picture


# --- cost ----------------------------------------------------------------------------------------
def run_cost(args) -> str:
    from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
    from robopolicy.policies.pad import PADConfig, PADPolicy
    from robopolicy.types import FeatureSpec

    s = args.image_size
    features = FeatureSpec(action_dim=4, state_dim=39, cameras={"corner": (3, s, s)}, fps=80, use_language=True)
    stats = synthetic_stats(features)
    torch.manual_seed(0)
    policies = {
        "PAD joint": PADPolicy(PADConfig(), features, stats),
        "PAD action-only": PADPolicy(PADConfig(image_loss_weight=0.0), features, stats),
        "Diffusion Policy, DDIM-10": DiffusionPolicy(DiffusionConfig(horizon=16, n_action_steps=8), features, stats),
    }
    if args.check:
        policies = {"PAD joint": PADPolicy(PADConfig(d_model=32, n_layers=1, n_heads=2), features, stats),
                    "Diffusion Policy, DDIM-10": policies["Diffusion Policy, DDIM-10"]}
    g = torch.Generator().manual_seed(0)
    obs = {"observation.state": torch.rand(1, 2, 39, generator=g) * 2 - 1,
           "observation.images.corner": torch.rand(1, 2, 3, s, s, generator=g), "task": ["press the button"]}
    evals, params = {}, {}
    for name, p in policies.items():
        p.eval()
        _, state = p.act(obs, p.init_state(1))
        evals[name] = state.info["denoiser_evals"]
        params[name] = sum(x.numel() for x in p.parameters())
    ms = interleaved_ms({n: (lambda p=p: p.act(obs, p.init_state(1))) for n, p in policies.items()}, args.reps, warmup=2)
    dp = ms["Diffusion Policy, DDIM-10"]
    rows = ["| policy | parameters | denoiser evals / chunk | latency / chunk (ms, median) | vs DP DDIM-10 |",
            "|---|---|---|---|---|"]
    for name in policies:
        rows.append(f"| {name} | {params[name] / 1e6:.1f} M | {evals[name]} | {ms[name]:.1f} | {ms[name] / dp:.2f}x |")
    return (f"Batch 1, CPU, {torch.get_num_threads()} threads, random weights, mt10's shapes (39-d state, corner "
            f"camera {s}x{s}, the instruction, 2 observation steps, horizon 16, chunks of 8 actions); "
            + ("--check: a 1-block d_model-32 PAD, not the default; " if args.check else
               "the default configs (PAD: DiT d_model 256 x 4 blocks, 64 image tokens + 16 action tokens); ")
            + f"{args.reps} calls each, taking turns.\n\n" + "\n".join(rows) + "\n")


def _slug(text: str) -> str:
    from robopolicy.paths import slug

    return slug(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=None, choices=["success", "frames", "cost"],
                    help="default: cost (with --check: all three)")
    ap.add_argument("--suite", default="metaworld/mt10")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--episodes", type=int, default=50, help="demonstrations per task")
    ap.add_argument("--action-free-episodes", type=int, default=50, help="cotrain: extra action-free episodes per task")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--minutes", type=float, default=70.0, help="training time budget per variant")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--eval-episodes", type=int, default=20, help="held-out episodes per task")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="recording worker processes")
    ap.add_argument("--dataset", default=None, help="demonstration dataset folder (default: the trainer's)")
    ap.add_argument("--checkpoint", default=None, help="frames: the PAD checkpoint (default: the joint run)")
    ap.add_argument("--frame-episodes", type=int, default=2, help="frames: held-out episodes per task")
    ap.add_argument("--frame-samples", type=int, default=64, help="frames: random frames to predict")
    ap.add_argument("--reps", type=int, default=20, help="cost: timed calls per policy")
    ap.add_argument("--out", default=None, help="where variant results go (default results/pad_image_<suite>)")
    ap.add_argument("--check", action="store_true",
                    help="a small model on one task with a few steps: checks every path in minutes")
    ap.add_argument("--no-write", action="store_true", help="print the tables, write nothing to docs/")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for the trainings")
    args = ap.parse_args()
    if args.check:
        args.suite = "metaworld/mt1/button-press-topdown-v3"
        args.episodes, args.action_free_episodes, args.steps, args.minutes = 3, 2, 6, None
        args.eval_episodes, args.frame_episodes, args.frame_samples, args.reps = 1, 1, 4, 3
        args.out = args.out or "/tmp/pad_bench"
        args.dataset = args.dataset or str(Path(args.out).resolve() / "demos")
        args.overrides = CHECK_OVERRIDES + args.overrides
        if not args.no_write:
            raise SystemExit("--check measures nothing worth keeping: add --no-write")
        args.parts = args.parts or ["success", "frames", "cost"]
    args.parts = args.parts or ["cost"]
    torch.set_num_threads(args.threads)
    out = Path(args.out).resolve() if args.out else ROOT / "results" / f"pad_image_{_slug(args.suite)}"
    args.data_root = ROOT / "datasets"
    if args.check:  # everything the check records or trains stays in --out
        out.mkdir(parents=True, exist_ok=True)
        os.chdir(out)
        args.data_root = out / "datasets"
    sections = []
    if "success" in args.parts:
        run_success(args, out)
        sections.append((f"PAD on {args.suite}: joint vs action-only vs co-training vs DP vs DDVLA", success_table(args, out)))
    if "frames" in args.parts:
        if args.check and not args.checkpoint:
            args.checkpoint = str(Path("checkpoints") / f"bench_pad_joint_{_slug(args.suite)}")
        body, _ = run_frames(args)
        sections.append((f"PAD on {args.suite}: predicted vs real future frames", body))
    if "cost" in args.parts:
        sections.append(("PAD: inference cost per chunk vs DP DDIM-10", run_cost(args)))
    for title, body in sections:
        body = body + "\n" + provenance()
        print(f"## {title}\n\n{body}")
        if not args.no_write:
            write_section(title, body)


if __name__ == "__main__":
    main()
