"""World-model benchmark on a Meta-World task (state): play data, training, fidelity vs horizon,
success head, imagined episodes, speed, and policy evaluation inside the model vs the simulator.

    python scripts/bench_world_model.py --task push-v3 --wm-minutes 12

Stages (each cached under ``--work`` (default checkpoints/bench_world_model/<task>), so a rerun only does what is missing; ``--stage`` runs one):
  data     play data: ``--episodes`` noisy-expert episodes on train trials (noise levels 0, 0.1,
           0.3, 0.6, random-action segments, failures kept) + ``--heldout`` on eval trials
  wm       the diffusion world model and the same-size MLP regression model, ``--wm-minutes`` each
  policy   Diffusion Policy checkpoints of growing training length (one run, resumed in segments)
  eval     each policy checkpoint in the true simulator and inside the world model, same trials
  report   fidelity / heads / speed measurements and the section of docs/benchmarks.md
One torch thread throughout (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from robopolicy.benchmarks import load_json, save_json

HORIZONS = (1, 5, 10, 25, 50)
NOISE_LEVELS = (0.0, 0.1, 0.3, 0.6)


# --- stages -------------------------------------------------------------------------------------
def stage_data(a) -> dict:
    from robopolicy.world_model.play import record_play_dataset

    out = {}
    for name, n, split in (("train", a.episodes, "train"), ("heldout", a.heldout, "eval")):
        t0 = time.monotonic()
        s = record_play_dataset(a.env, a.work / f"play_{name}", n, seed_split=split, noise_levels=NOISE_LEVELS,
                                num_workers=0, progress=False)
        out[name] = {"episodes": s.episodes, "frames": s.frames, "new_episodes": s.new_episodes,
                     "record_s": time.monotonic() - t0}
    return out


def stage_wm(a) -> dict:
    from robopolicy.world_model.config import StateWorldModelConfig
    from robopolicy.world_model.train import WorldModelTrainConfig, run_wm_training

    out = {}
    for objective in ("diffusion", "regression"):
        run = a.work / "wm" / objective
        if (run / "last").exists():
            out[objective] = load_json(run / "bench_train.json")
            continue
        cfg = WorldModelTrainConfig(env=a.env, dataset=str(a.work / "play_train"), output_dir=str(a.work / "wm"),
                                    run_name=objective, steps=a.wm_steps, max_minutes=a.wm_minutes,
                                    num_threads=1, device="cpu", seed=0,
                                    model=StateWorldModelConfig(objective=objective))
        res = run_wm_training(cfg, progress=False)
        save_json(res, run / "bench_train.json")
        out[objective] = res
    return out


def stage_policy(a) -> list[str]:
    from robopolicy.config_utils import from_dict
    from robopolicy.policies.diffusion.config import DiffusionConfig
    from robopolicy.train.config import EvalConfig, TrainConfig
    from robopolicy.train.run import run_training
    from robopolicy.train.checkpoint import resolve_checkpoint

    keep = a.work / "policies"
    done = []
    for steps in a.policy_steps:
        dst = keep / f"diffusion_step{steps:05d}"
        if (dst / "meta.json").exists():
            done.append(str(dst))
            continue
        cfg = TrainConfig(policy=from_dict(DiffusionConfig, {}), env=a.env, obs="state", episodes=a.demos,
                          run_name="bench_wm_policy", output_dir=str(a.work / "policy_run"), resume=True,
                          steps=steps, save_every=10**6, num_threads=1, device="cpu",
                          warmup_steps=min(500, steps // 4), eval=EvalConfig(episodes=0))
        run_training(cfg, "diffusion", progress=False)
        src = resolve_checkpoint(a.work / "policy_run" / "bench_wm_policy")
        shutil.copytree(src, dst.with_suffix(".tmp"), dirs_exist_ok=True)
        os.replace(dst.with_suffix(".tmp"), dst)
        done.append(str(dst))
    return done


def stage_policy_play(a, checkpoints: list[str]) -> dict:
    """Rollouts of the ``--policy-play`` checkpoints (train trials, noise 0 / 0.1) as more play
    data, and a diffusion world model trained on the noisy-expert data plus them."""
    from robopolicy.world_model.config import StateWorldModelConfig
    from robopolicy.world_model.play import record_play_dataset
    from robopolicy.world_model.train import WorldModelTrainConfig, run_wm_training

    chosen = [c for c in checkpoints if int(Path(c).name.split("step")[-1]) in a.policy_play]
    datasets = []
    for ckpt in chosen:
        out = a.work / f"play_policy_{Path(ckpt).name}"
        record_play_dataset(a.env, out, a.policy_play_episodes, seed_split="train", noise_levels=(0.0, 0.1),
                            num_workers=0, progress=False, policy=ckpt)
        datasets.append(str(out))
    run = a.work / "wm" / "diffusion_pp"
    res = load_json(run / "bench_train.json")
    if res is None:
        cfg = WorldModelTrainConfig(env=a.env, dataset=str(a.work / "play_train"), extra_datasets=datasets,
                                    output_dir=str(a.work / "wm"), run_name="diffusion_pp", steps=a.wm_steps,
                                    max_minutes=a.wm_minutes, num_threads=1, device="cpu", seed=0,
                                    resume=(run / "last").exists(), model=StateWorldModelConfig())
        res = run_wm_training(cfg, progress=False)
        save_json(res, run / "bench_train.json")
    return {"checkpoints": chosen, "datasets": datasets, "episodes_per_checkpoint": a.policy_play_episodes,
            "wm": res}


def stage_eval(a, checkpoints: list[str]) -> list[dict]:
    from envs import make_suite
    from robopolicy.eval import evaluate
    from robopolicy.train.checkpoint import load_policy
    from robopolicy.world_model.env import world_model_suite

    rows = []
    for ckpt in checkpoints:
        cache = Path(ckpt) / "bench_wm_eval.json"
        row = load_json(cache)
        if row is None or row.get("episodes") != a.eval_episodes:
            policy = load_policy(ckpt)
            t0 = time.monotonic()
            real = evaluate(policy, make_suite(a.env, obs="state"), episodes=a.eval_episodes, n_envs=4,
                            vector="sync", progress=False, seed=0)
            t1 = time.monotonic()
            suite = world_model_suite(str(a.work / "wm" / "diffusion"), a.env, policy)
            imag = evaluate(policy, suite, episodes=a.eval_episodes, n_envs=a.eval_episodes, progress=False, seed=0)
            t2 = time.monotonic()
            real_s = {(e["trial"]): e["success"] for e in real["per_episode"]}
            agree = float(np.mean([real_s[e["trial"]] == e["success"] for e in imag["per_episode"]]))
            row = {"checkpoint": ckpt, "episodes": a.eval_episodes, "real": real["success_rate"],
                   "imagined": imag["success_rate"], "per_episode_agreement": agree,
                   "real_s": t1 - t0, "imagined_s": t2 - t1,
                   "real_mean_length": real["mean_length"], "imagined_mean_length": imag["mean_length"],
                   "real_per_episode": real_s_list(real)}
            save_json(row, cache)
        pp = a.work / "wm" / "diffusion_pp"
        if (pp / "last").exists() and "imagined_pp" not in row:
            policy = load_policy(ckpt)
            imag = evaluate(policy, world_model_suite(str(pp), a.env, policy), episodes=a.eval_episodes,
                            n_envs=a.eval_episodes, progress=False, seed=0)
            if "real_per_episode" not in row:  # a row cached before per-episode outcomes were kept
                real = evaluate(policy, make_suite(a.env, obs="state"), episodes=a.eval_episodes, n_envs=4,
                                vector="sync", progress=False, seed=0)
                row["real_per_episode"] = real_s_list(real)
            real_s = dict((t, s_) for t, s_ in row["real_per_episode"])
            row["imagined_pp"] = imag["success_rate"]
            row["per_episode_agreement_pp"] = float(np.mean([real_s[e["trial"]] == e["success"]
                                                             for e in imag["per_episode"]]))
            save_json(row, cache)
        rows.append(row)
    return rows


def real_s_list(res: dict) -> list:
    return [[e["trial"], bool(e["success"])] for e in res["per_episode"]]


# --- measurements for the report ------------------------------------------------------------------
def _models(a):
    from robopolicy.world_model.checkpoint import load_world_model

    return {o: load_world_model(a.work / "wm" / o) for o in ("diffusion", "regression")}


def _start_batch(eps, T: int, H: int, stride: int):
    """Start frames t0 (with T-1 real frames before them and H recorded actions after) of every
    held-out episode: (states (B, T, S), past actions (B, T-1, A), future actions (B, H, A), true
    states (B, H, S) after each action)."""
    hist, past, fut, true = [], [], [], []
    for a_, b_ in eps.bounds:
        for t0 in range(a_ + T - 1, b_ - H, stride):
            hist.append(eps.states[t0 - T + 1: t0 + 1])
            past.append(eps.actions[t0 - T + 1: t0])
            fut.append(eps.actions[t0: t0 + H])
            true.append(eps.states[t0 + 1: t0 + H + 1])
    return [torch.from_numpy(np.stack(x)) for x in (hist, past, fut, true)]


def fidelity(a, models, eps) -> dict:
    """Open-loop error at each horizon: mean |pred - true| of the normalized state (all 39 dims,
    min-max units) and the object position error in cm, for the models and copy-last-state."""
    from robopolicy.types import STATE_KEY

    T = models["diffusion"].config.n_history
    H = max(HORIZONS)
    hist, past, fut, true = _start_batch(eps, T, H, a.fidelity_stride)
    norm = models["diffusion"].normalizer
    true_n = norm.normalize(STATE_KEY, true)
    out = {"starts": int(len(hist))}
    preds = {}
    for name, m in models.items():
        gen = torch.Generator().manual_seed(0)
        r = m.rollout_from_history(hist, past)
        steps = []
        for h in range(H):
            o, r = m.step(r, fut[:, h], generator=gen)
            steps.append(o.obs[STATE_KEY])
        preds[name] = torch.stack(steps, dim=1)
    preds["copy-last-state"] = hist[:, -1:].expand(-1, H, -1)
    for name, p in preds.items():
        p_n = norm.normalize(STATE_KEY, p)
        out[name] = {
            str(h): {"state_mae": float((p_n[:, h - 1] - true_n[:, h - 1]).abs().mean()),
                     "object_cm": float(100 * (p[:, h - 1, 4:7] - true[:, h - 1, 4:7]).norm(dim=-1).mean()),
                     "hand_cm": float(100 * (p[:, h - 1, 0:3] - true[:, h - 1, 0:3]).norm(dim=-1).mean())}
            for h in HORIZONS}
    return out


def heads_and_episodes(a, model, eps) -> dict:
    """Success-head AUROC on held-out frames; success of each held-out episode replayed open loop
    from its real first observation (the recorded actions) in the model vs what really happened."""
    from robopolicy.eval.stats import auroc
    from robopolicy.types import STATE_KEY
    from robopolicy.world_model.data import TransitionWindows
    from robopolicy.world_model.play import REWARD_KEY, SUCCESS_KEY

    w = TransitionWindows(eps, model.config.n_history, model.config.n_future)
    b = w.batch(np.arange(len(w)))
    heads = model.predict_heads(b)
    labels = eps.success.tolist()
    out = {"frames": len(w), "success_frames": int(eps.success.sum()),
           "success_auroc": auroc(heads[SUCCESS_KEY].tolist(), labels) if 0 < sum(labels) < len(labels) else None,
           "reward_corr": float(np.corrcoef(heads[REWARD_KEY].numpy(), eps.rewards)[0, 1])}
    # open-loop replay of whole episodes
    n = eps.num_episodes
    L = int((eps.bounds[:, 1] - eps.bounds[:, 0]).max())
    first = torch.from_numpy(eps.states[eps.bounds[:, 0]])
    r = model.init_rollout({STATE_KEY: first})
    gen = torch.Generator().manual_seed(0)
    imagined = np.zeros(n, dtype=bool)
    for t in range(L):
        idx = np.minimum(eps.bounds[:, 0] + t, eps.bounds[:, 1] - 1)
        live = eps.bounds[:, 0] + t < eps.bounds[:, 1]
        o, r = model.step(r, torch.from_numpy(eps.actions[idx]), generator=gen)
        imagined |= (o.success.numpy() > 0.5) & live
    true = eps.episode_success()
    out.update({"episodes": n, "true_success_rate": float(true.mean()), "imagined_success_rate": float(imagined.mean()),
                "episode_agreement": float((true == imagined).mean()),
                "by_noise": {str(s): {"episodes": int(sum(1 for j in range(n) if NOISE_LEVELS[int(eps.episode_index[j]) % 4] == s)),
                                      "true": float(np.mean([true[j] for j in range(n) if NOISE_LEVELS[int(eps.episode_index[j]) % 4] == s] or [np.nan])),
                                      "imagined": float(np.mean([imagined[j] for j in range(n) if NOISE_LEVELS[int(eps.episode_index[j]) % 4] == s] or [np.nan]))}
                             for s in NOISE_LEVELS}})
    return out


def speed(a, model) -> dict:
    from envs import make_suite
    from robopolicy.world_model.env import WorldModelSuite

    suite = make_suite(a.env, obs="state")
    task = suite.tasks[0]
    env = suite.make_env(task)
    env.reset(seed=suite.trial_seed(task, 0, "eval"))
    rng = np.random.default_rng(0)
    n = 300
    t0 = time.perf_counter()
    for _ in range(n):
        env.step(rng.uniform(-1, 1, 4).astype(np.float32))
    real = n / (time.perf_counter() - t0)
    env.close()
    wms = WorldModelSuite(model, suite)
    out = {"real_steps_per_s": real}
    for b in (1, 64):
        vec = wms.make_vector(task, b)
        vec.reset(seed=[suite.trial_seed(task, i, "eval") for i in range(b)])
        acts = rng.uniform(-1, 1, (b, 4)).astype(np.float32)
        vec.step(acts)
        k = 200 if b == 1 else 50
        t0 = time.perf_counter()
        for _ in range(k):
            vec.step(acts)
        out[f"imagined_steps_per_s_batch{b}"] = k * b / (time.perf_counter() - t0)
    wms.close()
    return out


def spearman(x, y) -> float | None:
    def ranks(v):
        v = np.asarray(v, dtype=float)
        order = v.argsort(kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for val in np.unique(v):  # average ranks of ties
            r[v == val] = r[v == val].mean()
        return r
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


# --- report -------------------------------------------------------------------------------------
def report(a, data, wm, fid, hd, spd, evals) -> str:
    from robopolicy.benchmarks import provenance

    lines = [f"World model on `{a.env}` (state, 39-d). Play data: {data['train']['episodes']} noisy-expert episodes "
             f"({data['train']['frames']} frames) on train trials, Meta-World's scripted expert with Gaussian action "
             f"noise std cycled over {list(NOISE_LEVELS)} and uniform random-action segments (per-step start "
             f"chance 0.02, 5-30 steps) in the noisy trials, failures kept; held out: {data['heldout']['episodes']} "
             f"episodes ({data['heldout']['frames']} frames) recorded the same way on the evaluator's held-out (eval) "
             f"trials 0..{data['heldout']['episodes'] - 1}.", ""]
    for o in ("diffusion", "regression"):
        w = wm[o]
        lines.append(f"- {o}: {w['parameters'] / 1e6:.2f} M parameters, {w['train_steps']} steps in "
                     f"{w['train_minutes']:.1f} min (batch 256, 1 thread)")
    lines += ["", "Diffusion: EDM, 3 Euler steps per imagined step, residual-MLP denoiser (FiLM on the noise level) "
              "predicting the next-state delta from the last 2 states and actions; regression: the same network "
              "and inputs, trained with MSE on the delta.", "",
              f"**Open-loop error vs horizon** ({fid['starts']} start frames every {a.fidelity_stride} steps of the "
              "held-out episodes; the recorded actions replayed; mean |error| of the min-max-normalized state over "
              "all dims, and object / hand position error in cm):", "",
              "| model | " + " | ".join(f"h={h}" for h in HORIZONS) + " |",
              "|---|" + "---|" * len(HORIZONS)]
    for name in ("diffusion", "regression", "copy-last-state"):
        cells = [f"{fid[name][str(h)]['state_mae']:.4f} / {fid[name][str(h)]['object_cm']:.2f} / "
                 f"{fid[name][str(h)]['hand_cm']:.2f}" for h in HORIZONS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "(cells: normalized-state MAE / object cm / hand cm)", "",
              f"**Success head** on the {hd['frames']} held-out frames ({hd['success_frames']} with "
              f"next.success): AUROC {hd['success_auroc']:.3f}; reward head vs the true dense reward: Pearson "
              f"r = {hd['reward_corr']:.3f}.", "",
              f"**Imagined episodes**: each held-out episode replayed open loop in the diffusion model from its real "
              f"first observation with its recorded actions: imagined success rate {hd['imagined_success_rate']:.0%} "
              f"vs true {hd['true_success_rate']:.0%} ({hd['episodes']} episodes; same outcome in "
              f"{hd['episode_agreement']:.0%} of them). By noise level (true / imagined): "
              + ", ".join(f"std {s}: {v['true']:.0%} / {v['imagined']:.0%} (n={v['episodes']})"
                          for s, v in hd["by_noise"].items()) + ".", "",
              f"**Speed** (1 thread): true simulator {spd['real_steps_per_s']:.0f} steps/s (one env, state obs); "
              f"imagined {spd['imagined_steps_per_s_batch1']:.0f} env steps/s at batch 1, "
              f"{spd['imagined_steps_per_s_batch64']:.0f} at batch 64.", ""]
    if evals:
        lines += [f"**Policy evaluation inside the model**: Diffusion Policy (state) checkpoints of one training run "
                  f"({a.demos} demonstrations), each evaluated on the same {a.eval_episodes} held-out trials in the "
                  "true simulator and in the diffusion world model (`robopolicy-eval ... world_model=`; reset from the "
                  "real initial observation of each trial, success from the success head):", "",
                  "| checkpoint | true success | imagined success | same outcome per episode |", "|---|---|---|---|"]
        pp = a.policy_play_info
        has_pp = all("imagined_pp" in r for r in evals)
        if has_pp:
            lines[-2] = lines[-2][:-1] + " imagined success, + policy play data | same outcome (+ policy play) |"
            lines[-1] = "|---|---|---|---|---|---|"
        for r in evals:
            name = Path(r["checkpoint"]).name + (" (its rollouts in the play data)" if pp and r["checkpoint"]
                                                 in pp["checkpoints"] else "")
            line = f"| {name} | {r['real']:.0%} | {r['imagined']:.0%} | {r['per_episode_agreement']:.0%} |"
            if has_pp:
                agree = r.get("per_episode_agreement_pp")
                line += f" {r['imagined_pp']:.0%} | {'' if agree is None else f'{agree:.0%}'} |"
            lines.append(line)
        real = [r["real"] for r in evals]
        for col, label in (("imagined", "noisy-expert play data"), ("imagined_pp", "+ policy play data")):
            if col == "imagined_pp" and not has_pp:
                continue
            imag = [r[col] for r in evals]
            rho = spearman(real, imag)
            lines += ["", f"{label}: Spearman rank correlation "
                      f"{'n/a (a constant column)' if rho is None else f'{rho:.2f}'}, mean absolute gap "
                      f"{np.mean(np.abs(np.subtract(real, imag))):.0%} over {len(evals)} checkpoints."]
        if has_pp:
            w = pp["wm"]
            lines += ["", f"+ policy play data: {pp['episodes_per_checkpoint']} rollouts (train trials, action noise "
                      f"0 / 0.1 alternating) of each checkpoint marked above added to the play data; a diffusion "
                      f"world model of the same config trained on both ({w['train_steps']} steps in "
                      f"{w['train_minutes']:.1f} min); the other rows are checkpoints it never saw."]
        lines += ["", "One family and one task only: the issue asks for several.", ""]
    else:
        lines += ["**Policy evaluation inside the model**: not run in this invocation (no `--stage eval` results).", ""]
    return "\n".join(lines) + "\n" + provenance()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="push-v3")
    p.add_argument("--stage", default="all", choices=["all", "data", "wm", "policy", "pp", "eval", "report"])
    p.add_argument("--work", type=Path, default=None, help="cache folder (default checkpoints/bench_world_model/<task>)")
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--heldout", type=int, default=40)
    p.add_argument("--wm-minutes", type=float, default=12.0)
    p.add_argument("--wm-steps", type=int, default=200000)
    p.add_argument("--demos", type=int, default=50)
    p.add_argument("--policy-steps", type=int, nargs="+", default=[200, 500, 1000, 1500, 2200, 3000])
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--fidelity-stride", type=int, default=10)
    p.add_argument("--policy-play", type=int, nargs="*", default=[],
                   help="policy checkpoints (by --policy-steps value) whose rollouts join the play data of a second "
                        "world model (diffusion_pp), e.g. 200 1000 2200")
    p.add_argument("--policy-play-episodes", type=int, default=30)
    p.add_argument("--no-write", action="store_true", help="print the section instead of writing docs/benchmarks.md")
    a = p.parse_args()
    torch.set_num_threads(1)
    a.env = f"metaworld/mt1/{a.task}"
    a.work = a.work or Path("checkpoints/bench_world_model") / a.task
    a.work.mkdir(parents=True, exist_ok=True)
    if a.stage in ("all", "data"):
        save_json(stage_data(a), a.work / "data.json")
    if a.stage in ("all", "wm"):
        save_json(stage_wm(a), a.work / "wm.json")
    if a.stage in ("all", "policy"):
        save_json(stage_policy(a), a.work / "policies.json")
    a.policy_play_info = load_json(a.work / "policy_play.json")
    if a.policy_play and a.stage in ("all", "pp"):
        a.policy_play_info = stage_policy_play(a, load_json(a.work / "policies.json") or [])
        save_json(a.policy_play_info, a.work / "policy_play.json")
    if a.stage in ("all", "eval"):
        save_json(stage_eval(a, load_json(a.work / "policies.json") or []), a.work / "evals.json")
    if a.stage in ("all", "report"):
        from robopolicy.world_model.data import load_episodes

        models = _models(a)
        held = load_episodes(a.work / "play_heldout")
        fid = fidelity(a, models, held)
        hd = heads_and_episodes(a, models["diffusion"], held)
        spd = speed(a, models["diffusion"])
        save_json({"fidelity": fid, "heads": hd, "speed": spd}, a.work / "report.json")
        body = report(a, load_json(a.work / "data.json"), load_json(a.work / "wm.json"), fid, hd, spd,
                      load_json(a.work / "evals.json"))
        if a.no_write:
            print(body)
        else:
            from robopolicy.benchmarks import write_section

            write_section(f"World model: state, metaworld/mt1/{a.task}", body)
            print(body)


if __name__ == "__main__":
    main()
