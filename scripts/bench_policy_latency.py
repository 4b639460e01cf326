"""Diffusion Policy speed against LeRobot 0.4.4's DiffusionPolicy, both timed in the same run.

LeRobot cannot share our environment (no lerobot release accepts torch 2.13's dependency set), so
it runs in its own virtual environment (recipe: shared ANCHORS.md) as a persistent worker process,
``scripts/lerobot_worker.py``, that answers one JSON line per request. Both sides build the same
network sizes (action dim 4, 2 observation steps, horizon 16, 8 executed actions, 100 train
timesteps squaredcos_cap_v2 epsilon, UNet kernel 5 with FiLM; state 39-d; image = state + one
3x84x84 camera, ResNet-18 from scratch with GroupNorm, crop 76, spatial softmax 32 keypoints) and
time, on ``--threads`` CPU threads each:
* a DDIM-10 and a DDPM-100 action chunk at batch 1 (under inference_mode),
* one training step at batch 64 (loss + backward + AdamW step; ours optionally under bf16 autocast).
The measurements alternate: in each of ``--rounds`` rounds, each measurement is timed on our side
and then on LeRobot's (warm-up calls first), so load from other work hits both alike. Each ratio
is ours / LeRobot within one round; the table gives the median ratio and its range over rounds.
Without the LeRobot environment it says so in one line and prints our absolute numbers only.
The table goes into docs/benchmarks.md (unless ``--no-doc``).

    python scripts/bench_policy_latency.py                 # state + image, 3 rounds
    python scripts/bench_policy_latency.py --configs state --reps 5 --no-doc
    python scripts/bench_policy_latency.py --lerobot-python /path/to/venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "lerobot_worker.py"
DEFAULT_LEROBOT_PYTHON = REPO.parent / "lerobot_venv" / "bin" / "python"
ENV_VAR = "ROBOPOLICY_LEROBOT_PYTHON"

CONFIGS = ("state", "state-large", "image")
SHARED = ("ddim10", "ddpm100", "train")  # timed on both sides
# Ours only, compared with LeRobot's counterpart measured in the same round.
COUNTERPART = {"ddim10": "ddim10", "ddpm100": "ddpm100", "train": "train", "ddim10_compiled": "ddim10", "train_bf16": "train"}
LABELS = {
    "ddpm100": "DDPM-100 chunk, batch 1",
    "ddim10": "DDIM-10 chunk, batch 1",
    "ddim10_compiled": "DDIM-10 chunk, batch 1, ours torch.compile'd",
    "train": "train step, batch 64, fp32",
    "train_bf16": "train step, batch 64, ours bf16 autocast",
}
VS = {"ddim10_compiled": " (vs LeRobot eager)", "train_bf16": " (vs LeRobot fp32)"}  # what the ratio compares
# issue 17: a DDIM-10 chunk <= 0.4x LeRobot's, a training step <= 0.6x (state and image)
TARGETS = {"ddpm100": 0.4, "ddim10": 0.4, "ddim10_compiled": 0.4, "train": 0.6, "train_bf16": 0.6}
STATE_DIM, ACTION_DIM, BATCH = 39, 4, 64
STARTUP_TIMEOUT_S = 300.0


# --- pure logic (unit-tested) -----------------------------------------------------------------
def reps_for(config: str, measurement: str, reps: int) -> int:
    """Timed calls per round for one measurement (the same on both sides): fast chunks get more,
    the slow ones fewer."""
    slow = config == "state-large"
    if measurement.startswith("ddim10"):
        return reps * 3
    if measurement == "ddpm100":
        return max(1, reps // 3) if slow else reps
    return max(2, reps // 3) if slow or config == "image" else reps


def find_lerobot_python(arg: str | None, environ: dict[str, str] | None = None,
                        default: Path | None = None) -> tuple[Path | None, str]:
    """The LeRobot environment's Python: ``--lerobot-python``, else $ROBOPOLICY_LEROBOT_PYTHON, else
    ``default`` (DEFAULT_LEROBOT_PYTHON) if it exists. Returns (path or None, why it is missing)."""
    environ = os.environ if environ is None else environ
    default = DEFAULT_LEROBOT_PYTHON if default is None else default
    for given, source in ((arg, "--lerobot-python"), (environ.get(ENV_VAR), f"${ENV_VAR}")):
        if given:
            path = Path(given).expanduser()
            return (path, "") if path.exists() else (None, f"{source} {path} does not exist")
    if default.exists():
        return default, ""
    return None, f"no --lerobot-python, no ${ENV_VAR} and no {default}"


def ratio_stats(ours: list[float], ref: list[float]) -> tuple[float, float, float]:
    """(median, min, max) over rounds of ours[i] / ref[i] (round i of each side)."""
    if len(ours) != len(ref) or not ours:
        raise ValueError(f"need one LeRobot time per round: {len(ours)} ours, {len(ref)} LeRobot")
    ratios = [o / r for o, r in zip(ours, ref)]
    return statistics.median(ratios), min(ratios), max(ratios)


def table(results: dict[str, dict[str, dict[str, list[float]]]], params: dict[str, dict[str, float]],
          compile_s: dict[str, float] | None = None) -> str:
    """Markdown table. ``results[config][measurement]`` = {"ours": per-round medians (ms), and, when
    LeRobot ran, "lerobot": its per-round medians}; ours-only measurements (compiled, bf16) are
    compared with their LeRobot counterpart. ``params[config]`` = {"ours": n, "lerobot": n}.
    Without any LeRobot times there are no LeRobot, ratio or target columns."""
    with_ref = any("lerobot" in m for res in results.values() for m in res.values())
    if with_ref:
        rows = ["| config | params (ours / LeRobot) | metric | robopolicy (ms) | LeRobot 0.4.4 (ms) | "
                "ratio ours/LeRobot (median) | ratio range over rounds | target ratio |",
                "|---|---|---|---|---|---|---|---|"]
    else:
        rows = ["| config | params | metric | robopolicy (ms, median of rounds) | range over rounds (ms) |",
                "|---|---|---|---|---|"]
    for name, res in results.items():
        p = params.get(name, {})
        for key in LABELS:
            if key not in res:
                continue
            ours = res[key]["ours"]
            mid = statistics.median(ours)
            if not with_ref:
                rows.append(f"| {name} | {p.get('ours', 0) / 1e6:.1f} M | {LABELS[key]} | {mid:,.1f} | "
                            f"{min(ours):,.1f}-{max(ours):,.1f} |")
                continue
            ref = res.get(COUNTERPART[key], {}).get("lerobot")
            if ref is None:
                rows.append(f"| {name} | | {LABELS[key]} | {mid:,.1f} | not run | | |")
                continue
            r, lo, hi = ratio_stats(ours, ref)
            target = TARGETS[key]
            rows.append(
                f"| {name} | {p.get('ours', 0) / 1e6:.1f} M / {p.get('lerobot', 0) / 1e6:.1f} M | {LABELS[key]}{VS.get(key, '')} | "
                f"{mid:,.1f} | {statistics.median(ref):,.1f} | {r:.2f} | {lo:.2f}-{hi:.2f} | "
                f"<= {target:.2f} {'ok' if r <= target else 'MISSED'} |"
            )
        if compile_s and name in compile_s:
            cells = [name, "", "torch.compile time (first chunk, ours)", f"{compile_s[name] * 1e3:,.0f}"]
            cells += [""] * (rows[0].count("|") - 1 - len(cells))
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


# --- the LeRobot worker -----------------------------------------------------------------------
class WorkerError(RuntimeError):
    pass


class LeRobotWorker:
    """scripts/lerobot_worker.py running under the LeRobot environment's Python."""

    def __init__(self, python: Path, threads: int):
        self.stderr = tempfile.TemporaryFile(mode="w+")
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="")
        self.proc = subprocess.Popen(
            [str(python), str(WORKER), "--threads", str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, text=True, bufsize=1, env=env, cwd=str(WORKER.parent),
        )
        self.info = self._read(STARTUP_TIMEOUT_S)
        if not self.info.get("ready"):
            raise WorkerError(f"unexpected first line {self.info}")

    def _read(self, timeout: float | None = None) -> dict:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not box:
            self.close()
            raise WorkerError(f"no reply within {timeout:.0f} s")
        if not box[0]:
            raise WorkerError(f"exited with status {self.proc.wait()}: {self.last_error()}")
        return json.loads(box[0])

    def last_error(self) -> str:
        self.stderr.seek(0)
        lines = [ln.strip() for ln in self.stderr.read().splitlines() if ln.strip()]
        return lines[-1] if lines else "(nothing on stderr)"

    def request(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        out = self._read()
        if not out.get("ok"):
            raise WorkerError(out.get("error", str(out)))
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def start_lerobot(arg: str | None, threads: int, configs: list[str]) -> tuple[LeRobotWorker | None, str]:
    """The started worker with every config built, or (None, one line saying why not)."""
    python, why = find_lerobot_python(arg)
    if python is None:
        return None, f"LeRobot environment not found ({why}): robopolicy numbers only, no ratios"
    try:
        worker = LeRobotWorker(python, threads)
        for name in configs:
            worker.request(cmd="build", config=name)
    except (OSError, WorkerError, json.JSONDecodeError) as exc:
        return None, f"LeRobot worker under {python} failed to start ({exc}): robopolicy numbers only, no ratios"
    return worker, ""


# --- our side ---------------------------------------------------------------------------------
def time_calls(fn, reps: int, warmup: int) -> list[float]:
    """Wall times (ms) of ``reps`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(1e3 * (time.perf_counter() - t0))
    return out


class Ours:
    """Our DiffusionPolicy for one config, its inputs and optimizer."""

    def __init__(self, name: str):
        import torch

        from robopolicy.benchmarks import synthetic_stats
        from robopolicy.policies.diffusion import DiffusionConfig, DiffusionPolicy
        from robopolicy.types import FeatureSpec

        cameras = {"corner": (3, 84, 84)} if name == "image" else {}
        features = FeatureSpec(action_dim=ACTION_DIM, state_dim=STATE_DIM, cameras=cameras)
        down = (512, 1024, 2048) if name == "state-large" else (64, 128, 256)
        cfg = DiffusionConfig(horizon=16, n_obs_steps=2, n_action_steps=8, down_dims=down, kernel_size=5)
        torch.manual_seed(0)
        self.policy = DiffusionPolicy(cfg, features, synthetic_stats(features))
        self.params = sum(p.numel() for p in self.policy.parameters())
        self.obs = self._batch(1, with_actions=False)
        self.batch = self._batch(BATCH, with_actions=True)
        # The trainer's kind of optimizer (robopolicy/train/trainer.py): fused AdamW with its betas and eps.
        self.opt = torch.optim.AdamW(self.policy.parameters(), lr=1e-4, betas=(0.95, 0.999), eps=1e-8, fused=True)

    def _batch(self, b: int, with_actions: bool) -> dict:
        import torch

        c = self.policy.config
        out = {"observation.state": torch.rand(b, c.n_obs_steps, STATE_DIM) * 2 - 1}
        for key, shape in zip(self.policy.features.image_keys, self.policy.features.cameras.values()):
            out[key] = torch.rand(b, c.n_obs_steps, *shape)
        if with_actions:
            out["action"] = torch.rand(b, c.horizon, ACTION_DIM) * 2 - 1
            out["action_is_pad"] = torch.zeros(b, c.horizon, dtype=torch.bool)
        return out

    def fn(self, measurement: str):
        import torch

        policy = self.policy
        if measurement in ("ddim10", "ddpm100", "ddim10_compiled"):
            sampler, steps = ("ddpm", 100) if measurement == "ddpm100" else ("ddim", 10)
            compiled = measurement == "ddim10_compiled"

            def chunk() -> None:
                policy.eval()
                policy.config.compile_unet = compiled
                try:
                    policy.sample_chunk(self.obs, sampler=sampler, num_steps=steps)  # inference_mode inside
                finally:
                    policy.config.compile_unet = False

            return chunk
        autocast = measurement == "train_bf16"

        def step() -> None:
            policy.train()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss, _ = policy.loss(self.batch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()

        return step


# --- main -------------------------------------------------------------------------------------
def preamble(args, names: list[str], measurements: list[str], worker: LeRobotWorker | None, skipped: str) -> str:
    counts = "timed calls per round and side: " + "; ".join(
        f"{n} " + ", ".join(f"{m} {reps_for(n, m, args.reps)}" for m in measurements) for n in names
    )
    robo = (
        "robopolicy rows: `robopolicy.policies.diffusion.DiffusionPolicy` (random weights, synthetic "
        "dataset statistics) in this environment; a chunk is `sample_chunk` (inference_mode; normalizes the "
        "observation, encodes it and returns the 16-step chunk), a training step is `policy.loss` (normalization "
        "included) + backward + a step of our trainer's optimizer (`torch.optim.AdamW(fused=True)`, betas "
        "0.95/0.999); the torch.compile'd chunk (when timed) is `compile_unet=true` (inductor, default mode)."
    )
    common = (
        "Network sizes: action dim 4, 2 obs steps, horizon 16, 8 executed actions, 100 train "
        "timesteps (squaredcos_cap_v2, epsilon), UNet down_dims (64,128,256) ((512,1024,2048) for state-large), "
        "kernel 5, FiLM; state 39-d; image: state + one 3x84x84 camera, ResNet-18 from scratch with GroupNorm, "
        "crop 76, spatial softmax 32 keypoints."
    )
    if worker is None:
        return (f"{skipped}.\n\n{robo} {common} Each number is the median over {args.rounds} round(s) of the "
                f"median of that round's timed calls ({counts}) after warm-up calls (2 in the first round, 1 after), "
                f"{args.threads} thread(s).")
    info = worker.info
    return (
        f"{robo} LeRobot rows: lerobot {info['lerobot']} `DiffusionPolicy` (torch {info['torch']}, "
        f"{info['threads']} thread(s)) in its own virtual environment (`{info['python']}`, recipe in shared "
        "ANCHORS.md), run by `scripts/lerobot_worker.py` in a subprocess with HF_HUB_OFFLINE=1, built from a "
        "hand-written `DiffusionConfig`; a chunk is `predict_action_chunk` at batch 1 under inference_mode with "
        "its observation queues already filled (no processor pipeline, so no normalization; it returns the 8 "
        "executed actions), its noise scheduler set to `DDIMScheduler` with 10 steps or `DDPMScheduler` with "
        "100; a training step is `policy.forward` (do_mask_loss_for_padding=True, as ours masks padding) + "
        "backward + a step of the optimizer LeRobot's trainer builds for this policy (`get_optimizer_preset()`: "
        "`torch.optim.Adam`, betas 0.95/0.999, weight decay 1e-6). LeRobot's pure-state input is a 4-d "
        "`observation.state` plus a 35-d `observation.environment_state` (it requires an image or an "
        f"environment state), so its UNet condition has the same width as ours. {common} Both sides use these sizes. "
        f"In each of {args.rounds} round(s), every measurement ({', '.join(m for m in measurements if m in SHARED)}) "
        "was timed on our side and then on LeRobot's"
        + (f" ({', '.join(m for m in measurements if m not in SHARED)}: ours only, timed after those and compared with LeRobot's fp32/eager counterpart of the same round)"
           if any(m not in SHARED for m in measurements) else "")
        + ", each after warm-up calls (2 in the first round, 1 after); the per-round value "
        f"is the median of that round's timed calls ({counts}); "
        "ms columns are medians over rounds, ratio = ours / LeRobot within a round (median and range over "
        "rounds). Every number below comes from this one run."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="state,image", help="comma list of: " + ", ".join(CONFIGS))
    ap.add_argument("--measurements", default=",".join(SHARED),
                    help="comma list of: " + ", ".join(SHARED) + " (timed on both sides)")
    ap.add_argument("--reps", type=int, default=9, help="timed calls per measurement per round (median taken)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (ours, then LeRobot, per measurement)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads on both sides")
    ap.add_argument("--bf16", action="store_true", help="also time our training step under bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="also time our DDIM-10 chunk with a torch.compile'd UNet")
    ap.add_argument("--lerobot-python", default=None,
                    help=f"Python of the LeRobot 0.4.4 environment (else ${ENV_VAR}, else {DEFAULT_LEROBOT_PYTHON})")
    ap.add_argument("--no-lerobot", action="store_true", help="time our side only")
    ap.add_argument("--no-doc", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = ap.parse_args()
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    shared = [m.strip() for m in args.measurements.split(",") if m.strip()]
    bad = [n for n in names if n not in CONFIGS] + [m for m in shared if m not in SHARED]
    if bad or not names or args.reps < 1 or args.rounds < 1:
        raise SystemExit(f"error: unknown or empty configs/measurements {bad}, or reps/rounds < 1; "
                         f"configs: {CONFIGS}, measurements: {SHARED}")
    ours_only = (["ddim10_compiled"] if args.compile else []) + (["train_bf16"] if args.bf16 else [])

    import torch

    from robopolicy.benchmarks import provenance, write_section

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    if load_before > 1.0:
        print(f"warning: load average {load_before:.1f} on {os.cpu_count()} cores: other work will distort these timings")
    t_start = time.perf_counter()
    if args.no_lerobot:
        worker, skipped = None, "LeRobot not run (--no-lerobot): robopolicy numbers only, no ratios"
    else:
        worker, skipped = start_lerobot(args.lerobot_python, args.threads, names)
    if worker is None:
        print(skipped)
    else:
        print(f"LeRobot {worker.info['lerobot']} worker: {worker.info['python']}, {worker.info['threads']} thread(s)")

    ours = {n: Ours(n) for n in names}
    params = {n: {"ours": ours[n].params} for n in names}
    if worker is not None:
        for n in names:  # already built by start_lerobot: this only reads the count
            params[n]["lerobot"] = worker.request(cmd="build", config=n)["params"]
    compile_s: dict[str, float] = {}
    if args.compile:
        for n in names:
            t0 = time.perf_counter()
            ours[n].fn("ddim10_compiled")()
            compile_s[n] = time.perf_counter() - t0

    results: dict[str, dict[str, dict[str, list[float]]]] = {n: {} for n in names}
    try:
        for rnd in range(args.rounds):
            warmup = 2 if rnd == 0 else 1
            for n in names:
                for m in shared + ours_only:
                    reps = reps_for(n, m, args.reps)
                    slot = results[n].setdefault(m, {"ours": []})
                    slot["ours"].append(statistics.median(time_calls(ours[n].fn(m), reps, warmup)))
                    if worker is not None and m in shared:
                        times = worker.request(cmd="time", config=n, measurement=m, reps=reps, warmup=warmup)["times_ms"]
                        slot.setdefault("lerobot", []).append(statistics.median(times))
            print(f"round {rnd + 1}/{args.rounds} done ({time.perf_counter() - t_start:.0f} s)", flush=True)
    except WorkerError as exc:
        raise SystemExit(f"error: the LeRobot worker failed mid-run ({exc}); nothing written") from exc
    finally:
        if worker is not None:
            worker.close()
    load_after = os.getloadavg()[0]
    body = (
        preamble(args, names, shared + ours_only, worker, skipped) + "\n\n" + table(results, params, compile_s) + "\n\n"
        + provenance()
        + f"Load average (1 min) before/after: {load_before:.2f} / {load_after:.2f} (other work on the machine "
        f"slows every row)  \nWall time: {time.perf_counter() - t_start:.0f} s\n"
    )
    print(body)
    if not args.no_doc:
        write_section("Diffusion Policy latency and training step", body)


if __name__ == "__main__":
    main()
