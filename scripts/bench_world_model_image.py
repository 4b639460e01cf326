"""Image world-model benchmark on a Meta-World task (64x64 corner camera + state): play data,
training, PSNR / SSIM of open-loop imagined frames vs horizon on held-out episodes (against
copying the last real frame), a real | imagined picture, the success head, and speed.

    python scripts/bench_world_model_image.py --task push-v3 --wm-minutes 20

Stages (cached under ``--work``, default checkpoints/bench_world_model_image/<task>; a rerun
only does what is missing): play data (``--episodes`` noisy-expert episodes on train trials, as
the state benchmark records them, + ``--heldout`` on eval trials), the image world model
(``--wm-minutes``, batch ``--batch-size``, one thread), then the measurements and the section
"World model: image observations" of docs/benchmarks.md with the picture docs/world_model_<task>_strip.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from robopolicy.benchmarks import load_json, save_json

HORIZONS = (1, 2, 5, 10, 25)
NOISE_LEVELS = (0.0, 0.1, 0.3, 0.6)
ROOT = Path(__file__).resolve().parents[1]


def stage_data(a) -> dict:
    from robopolicy.world_model.play import record_play_dataset

    out = {}
    for name, n, split in (("train", a.episodes, "train"), ("heldout", a.heldout, "eval")):
        t0 = time.monotonic()
        s = record_play_dataset(a.env, a.work / f"play_{name}", n, obs="image", image_size=a.image_size,
                                seed_split=split, noise_levels=NOISE_LEVELS, num_workers=0, progress=False)
        out[name] = {"episodes": s.episodes, "frames": s.frames, "record_s": time.monotonic() - t0}
    return out


def stage_wm(a) -> dict:
    from robopolicy.world_model.train import WorldModelTrainConfig, run_wm_training

    run = a.work / "wm" / a.run_name
    cache = run / "bench_train.json"
    if (run / "last").exists() and cache.is_file():
        return json.loads(cache.read_text())
    cfg = WorldModelTrainConfig(env=a.env, obs="image", image_size=a.image_size, dataset=str(a.work / "play_train"),
                                output_dir=str(a.work / "wm"), run_name=a.run_name, steps=a.wm_steps,
                                max_minutes=a.wm_minutes, batch_size=a.batch_size, num_threads=1, device="cpu",
                                seed=0, resume=(run / "last").exists())
    res = run_wm_training(cfg, progress=False)
    save_json(res, cache)
    return res


def copy_last_frame(eps, key: str, starts: np.ndarray, horizon: int) -> dict:
    """The baseline: predict frame t+h by frame t."""
    from robopolicy.world_model.metrics import psnr, ssim

    frames = eps.frames[key]
    real = torch.from_numpy(frames[starts[:, None] + np.arange(1, horizon + 1)])
    last = torch.from_numpy(frames[starts])[:, None].expand_as(real).contiguous()
    p, s = psnr(real, last), ssim(real, last)
    mse = (10 ** (-p / 10)).mean(0)
    return {"psnr": [float(-10 * np.log10(float(m))) if m > 0 else float("inf") for m in mse],
            "ssim": [float(v) for v in s.mean(0)]}


def measure(a, model, eps) -> dict:
    from robopolicy.eval.stats import auroc
    from robopolicy.world_model.data import TransitionWindows
    from robopolicy.world_model.metrics import image_fidelity, save_strip
    from robopolicy.world_model.play import SUCCESS_KEY

    H = max(HORIZONS)
    fid = image_fidelity(model, eps, H, n_starts=a.n_starts, seed=0)
    base = copy_last_frame(eps, model.camera_key, np.asarray(fid["starts"]), H)
    real, imagined = fid.pop("first")
    shown = [h - 1 for h in HORIZONS]
    suffix = "" if a.run_name == "image" else f"_{a.run_name}"
    strip = (a.work if a.no_write else ROOT / "docs") / f"world_model_{a.task}{suffix}_strip.png"
    save_strip(real[shown], imagined[shown], strip)
    w = TransitionWindows(eps, model.config.n_history, getattr(model.config, "n_future", 1))
    idx = np.arange(len(w))  # one window per held-out frame, in batches (each carries its frames)
    scores = torch.cat([model.predict_heads(w.batch(idx[i: i + 256]))[SUCCESS_KEY] for i in range(0, len(idx), 256)])
    labels = eps.success[idx].tolist()
    out = {"fidelity": fid, "copy_last_frame": base, "strip": str(strip),
           "strip_horizons": list(HORIZONS)}
    heads = {SUCCESS_KEY: scores}
    if 0 < sum(labels) < len(labels):
        out["success_auroc"] = auroc(heads[SUCCESS_KEY].tolist(), labels)
        out["auroc_frames"] = len(labels)
    return out


def speed(a, model) -> dict:
    from envs import make_suite
    from robopolicy.world_model.env import WorldModelSuite

    suite = make_suite(a.env, obs="image", image_size=a.image_size)
    task = suite.tasks[0]
    env = suite.make_env(task)
    env.reset(seed=suite.trial_seed(task, 0, "eval"))
    rng = np.random.default_rng(0)
    n = 100
    t0 = time.perf_counter()
    for _ in range(n):
        env.step(rng.uniform(-1, 1, 4).astype(np.float32))
    out = {"real_steps_per_s": n / (time.perf_counter() - t0)}
    env.close()
    wms = WorldModelSuite(model, suite)
    for b in (1, 64):
        vec = wms.make_vector(task, b)
        vec.reset(seed=[suite.trial_seed(task, i, "eval") for i in range(b)])
        acts = rng.uniform(-1, 1, (b, 4)).astype(np.float32)
        vec.step(acts)
        k = 30 if b == 1 else 5
        t0 = time.perf_counter()
        for _ in range(k):
            vec.step(acts)
        out[f"imagined_steps_per_s_batch{b}"] = k * b / (time.perf_counter() - t0)
    wms.close()
    return out


def report(a, data, wm, m, spd) -> str:
    from robopolicy.benchmarks import provenance

    fid, base = m["fidelity"], m["copy_last_frame"]
    cfg = a.model_summary
    lines = [f"Image world model on `{a.env}`: the next {a.image_size}x{a.image_size} corner-camera frame and the next "
             f"state from the last frames (stacked on channels), states and actions, one DiT "
             f"(`robopolicy/nn/dit.py`) under EDM, 3 Euler steps per imagined step. Play data: "
             f"{data['train']['episodes']} noisy-expert episodes ({data['train']['frames']} frames) on train trials "
             f"(expert action noise std cycled over {list(NOISE_LEVELS)}, random-action segments, failures kept); "
             f"held out: {data['heldout']['episodes']} episodes ({data['heldout']['frames']} frames) on eval trials.",
             "",
             f"- model: {wm['parameters'] / 1e6:.2f} M parameters, {wm['train_steps']} steps in "
             f"{wm['train_minutes']:.1f} min (batch {a.batch_size}, 1 thread, CPU)"
             + f"; {cfg}", "",
             f"**Open-loop frames vs horizon**: {fid['n_starts']} start frames drawn from the held-out episodes, the "
             "model fed its own imagined frames and the recorded actions; PSNR (dB, of the mean MSE) and SSIM of "
             "imagined vs real frame t+h, against copying the last real frame:", "",
             "| prediction | " + " | ".join(f"h={h}" for h in HORIZONS) + " |", "|---|" + "---|" * len(HORIZONS)]
    for name, d in (("world model", fid), ("copy last frame", base)):
        lines.append(f"| {name} | " + " | ".join(f"{d['psnr'][h - 1]:.2f} / {d['ssim'][h - 1]:.3f}" for h in HORIZONS)
                     + " |")
    lines += ["", "(cells: PSNR dB / SSIM)", "",
              f"Picture (first start frame; top real, bottom imagined, at h = {', '.join(map(str, HORIZONS))}): "
              f"![real vs imagined]({Path(m['strip']).name})", ""]
    if "success_auroc" in m:
        lines += [f"**Success head** on {m['auroc_frames']} held-out frames: AUROC {m['success_auroc']:.3f}.", ""]
    lines += [f"**Speed** (1 thread): true simulator with rendering {spd['real_steps_per_s']:.0f} steps/s (one env); "
              f"imagined {spd['imagined_steps_per_s_batch1']:.1f} env steps/s at batch 1, "
              f"{spd['imagined_steps_per_s_batch64']:.1f} at batch 64.", "",
              "Not measured here: policy success inside the image model vs the simulator.", ""]
    better = [h for h in HORIZONS if fid["psnr"][h - 1] > base["psnr"][h - 1]]
    lines[-1:] = [f"Horizons where the model beats copying the last frame (PSNR): {better or 'none'}.", ""]
    return "\n".join(lines) + "\n" + provenance()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="push-v3")
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--heldout", type=int, default=20)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--wm-minutes", type=float, default=20.0)
    p.add_argument("--wm-steps", type=int, default=100000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-starts", type=int, default=64)
    p.add_argument("--run-name", default="image",
                   help="the world-model run under <work>/wm/ (a new name trains a new model on the same play data; "
                        "its section and picture carry the name)")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    a.env = f"metaworld/mt1/{a.task}"
    a.work = a.work or ROOT / "checkpoints" / "bench_world_model_image" / a.task
    data_cache = a.work / "data.json"
    data = json.loads(data_cache.read_text()) if data_cache.is_file() else None
    if data is None:
        data = stage_data(a)
        save_json(data, data_cache)
    print("data", data, flush=True)
    wm = stage_wm(a)
    print("wm", {k: wm[k] for k in ("parameters", "train_steps", "train_minutes") if k in wm}, flush=True)
    from robopolicy.world_model.checkpoint import load_world_model
    from robopolicy.world_model.data import load_episodes

    model = load_world_model(a.work / "wm" / a.run_name)
    c = model.config
    a.model_summary = ", ".join(f"{k} {getattr(c, k)}" for k in ("n_history", "patch_size", "dim", "depth", "frame_target", "residual_std")
                                if hasattr(c, k))
    eps = load_episodes(a.work / "play_heldout", camera_keys=[model.camera_key])
    with torch.inference_mode():
        m = measure(a, model, eps)
        spd = speed(a, model)
    save_json({k: v for k, v in m.items()}, a.work / ("measure.json" if a.run_name == "image" else f"measure_{a.run_name}.json"))
    body = report(a, data, wm, m, spd)
    print(body)
    if not a.no_write:
        from robopolicy.benchmarks import write_section

        tag = "" if a.run_name == "image" else f", run {a.run_name}"
        print(f"wrote {write_section(f'World model: image observations ({a.task}{tag})', body)}")


if __name__ == "__main__":
    main()
