"""Benchmark the data pipeline: expert recording speed and dataset loading speed.

    python scripts/bench_data.py [--episodes 20] [--batches 60] [--no-doc]

Recording: frames/s of ``record_dataset`` (2 worker processes rolling out, the parent writing
parquet + mp4) for pushblock (state), Meta-World push-v3 (state) and push-v3 with images (the
suite's two 84x84 cameras, both encoded to AV1 mp4). Speeds exclude the workers' start-up (timed
separately).
Loading: windows/s of ``LeRobotDataset`` through a torch DataLoader, batch 64, 2 workers, shuffled,
each window = 16 actions + 2 observation steps; state only, and with one 84x84 video camera decoded
(first epoch decodes episodes into the per-worker cache; later epochs read the cache).
Prints a markdown table and replaces the "Data pipeline" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

# Heavy imports (torch) stay inside functions: spawned recorder workers re-import this module.


def bench_record(suite: str, obs: str, out: Path, episodes: int) -> tuple[float, float, int, float]:
    """(steady frames/s, worker start-up s, frames, total s): start-up is timed by a 0-episode run."""
    from robopolicy.data.record import record_dataset

    t0 = time.perf_counter()
    record_dataset(
        suite, out.with_name(out.name + "_startup"), 0, obs=obs, image_size=84, num_workers=2, progress=False
    )
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = record_dataset(suite, out, episodes, obs=obs, image_size=84, num_workers=2, progress=False)
    dt = time.perf_counter() - t0
    return s.frames / max(dt - startup, 1e-9), startup, s.frames, dt


def bench_load(root: Path, cameras: list[str], batches: int, epochs: int = 3) -> list[float]:
    import torch

    from robopolicy.data import LeRobotDataset

    probe = LeRobotDataset(root, camera_keys=[])
    fps = probe.fps
    obs_steps = [(k - 1) / fps for k in range(2)]
    delta = {"action": [(k - 1) / fps for k in range(16)], "observation.state": obs_steps}
    delta.update({c: obs_steps for c in cameras})
    ds = LeRobotDataset(root, delta_timestamps=delta, camera_keys=cameras)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=64, shuffle=True, num_workers=2, drop_last=True, persistent_workers=True
    )
    rates = []
    for _ in range(epochs):
        n, t0 = 0, time.perf_counter()
        for b, batch in enumerate(loader):
            n += batch["action"].shape[0]
            if b + 1 >= batches:
                break
        rates.append(n / (time.perf_counter() - t0))
    return rates


def main(argv: list[str] | None = None) -> str:
    from robopolicy.benchmarks import provenance, write_section

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=20, help="episodes recorded per suite")
    ap.add_argument("--batches", type=int, default=60, help="batches per loading epoch (at most one epoch)")
    ap.add_argument("--workdir", type=str, default=None, help="where datasets go (default: a temp folder)")
    ap.add_argument("--no-doc", action="store_true", help="print only; do not touch docs/benchmarks.md")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(args.workdir or tmp.name)
    rows = []
    for suite, obs in [
        ("pushblock", "state"),
        ("metaworld/mt1/push-v3", "state"),
        ("metaworld/mt1/push-v3", "image"),
    ]:
        out = work / f"{suite.replace('/', '_')}_{obs}"
        rate, startup, frames, dt = bench_record(suite, obs, out, args.episodes)
        what = "state" if obs == "state" else "state + 2 cameras 84x84 (AV1 mp4)"
        rows.append(
            f"| record | {suite}, {what} | {rate:,.0f} frames/s | {args.episodes} episodes, {frames} frames "
            f"in {dt:.1f} s, of which {startup:.1f} s worker start-up |"
        )
        print(rows[-1], flush=True)
    img = work / "metaworld_mt1_push-v3_image"
    for label, cams in [("state only", []), ("+ 1 camera 84x84 video", ["observation.images.corner"])]:
        rates = bench_load(img, cams, args.batches)
        rows.append(
            f"| load | push-v3 dataset, {label} | {rates[-1]:,.0f} windows/s | first epoch {rates[0]:,.0f}, "
            f"then {', '.join(f'{r:,.0f}' for r in rates[1:])} |"
        )
        print(rows[-1], flush=True)
    table = "\n".join(["| stage | setting | speed | notes |", "|---|---|---|---|", *rows])
    body = (
        f"{provenance()}\n"
        "Recording uses 2 worker processes (expert rollouts) and the parent process (parquet + AV1 mp4 "
        "writing, stats). Loading: torch DataLoader, batch 64, 2 workers, shuffle, windows of 16 actions "
        "and 2 observation steps; per-worker episode cache of decoded frames.\n\n" + table
    )
    print("\n" + table)
    if not args.no_doc:
        print(f"wrote {write_section('Data pipeline', body)}")
    if tmp is not None:
        tmp.cleanup()
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
