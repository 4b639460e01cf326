"""``robopolicy-deploy`` as a library call: a checkpoint (or a policy server), a robot, a rate ->
episodes in the control loop, a timing log, a plot and summary.json in the results folder."""

from __future__ import annotations

import importlib
import json
import math
import signal
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from robopolicy.deploy.loop import LoopConfig
from robopolicy.deploy.safety import SafetyConfig


@dataclass
class DeployJobConfig:
    """Run a checkpoint on a robot (simulated by default) in a fixed-rate control loop."""

    checkpoint: Optional[str] = None
    """A run folder (its newest checkpoint) or a step_<N> folder; leave unset with server=."""
    server: Optional[str] = None
    """ws://host:port of a running robopolicy-serve to take chunks from, instead of loading checkpoint here."""
    robot: str = "sim"
    """sim (a simulated robot over env's task) or package.module:Class implementing robopolicy.deploy.Robot."""
    robot_kwargs: Dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of a custom robot class."""
    env: Optional[str] = None
    """Suite of the simulated robot (default: the env the checkpoint was trained on)."""
    task: Optional[str] = None
    """Task of the suite (default: its first)."""
    instruction: Optional[str] = None
    """Instruction given to language-conditioned policies (default: the robot's)."""
    hz: Optional[float] = None
    """Control rate in Hz (default: the fps the policy was trained at)."""
    episodes: int = 1
    """Episodes to run."""
    trial: int = 0
    """First trial: episode i of a simulated robot starts from suite.trial_seed(task, trial + i, seed_split)."""
    seed_split: str = "eval"
    """Initial states of the simulated robot: eval (held out, as robopolicy-eval) | train."""
    max_steps: Optional[int] = None
    """Commands per episode (default: until the robot reports done, e.g. the simulator's step limit)."""
    duration_s: Optional[float] = None
    """Seconds per episode (default: no limit)."""
    scheduler: str = "sync"
    """Chunk scheduling: sync | ensemble | async (the evaluator's code) or any registered scheduler."""
    scheduler_kwargs: Dict[str, Any] = field(default_factory=dict)
    """Fields of the scheduler (e.g. {threshold: 4} for async, {coeff: 0.01} for ensemble)."""
    block_on_inference: Optional[bool] = None
    """Wait within a tick for the requested chunk (default: yes unless scheduler=async)."""
    clock: str = "real"
    """real (wall time, as on a robot) | sim (simulated time: repeatable, as fast as the CPU allows; robot=sim only)."""
    stop_on_success: bool = True
    """End an episode at the first success the robot reports."""
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    """Action bounds, change limit, hold action, watchdog, emergency-stop file."""
    output: Optional[str] = None
    """Results folder (default <checkpoint step>/deploy/<env slug>[_<settings>], see deploy_tag; with server= the served checkpoint's step folder, which must be on this machine, else give output=)."""
    plot: bool = True
    """Write timing.png (loop period and inference latency over the run)."""
    use_ema: bool = True
    """Run the EMA weights (as trained policies are meant to be used)."""
    device: str = "auto"
    """auto | cpu | cuda (local checkpoint only)."""
    seed: int = 0
    """Seed of the policy's sampling noise: episode i draws from its own stream, seeded as robopolicy-eval's."""
    torch_threads: Optional[int] = None
    """torch intra-op threads for local inference (default: torch's choice)."""
    server_timeout_s: float = 5.0
    """Seconds without a reply after which the policy server counts as dead (the robot is held)."""


def run_deploy(cfg: DeployJobConfig, progress: bool = True) -> dict[str, Any]:
    """Run ``cfg.episodes`` episodes; returns (and writes to ``summary.json``) success, per-episode
    results and the timing summary."""
    from robopolicy.deploy.clock import RealClock, SimClock
    from robopolicy.deploy.loop import ControlLoop
    from robopolicy.deploy.noise import episode_noise_seed
    from robopolicy.deploy.safety import EmergencyStop
    from robopolicy.deploy.scheduler import make_scheduler
    from robopolicy.deploy.timing import TimingLog
    from robopolicy.eval.stats import wilson_interval

    if (cfg.checkpoint is None) == (cfg.server is None):
        raise ValueError("deploy: give exactly one of checkpoint=<path> (run the policy here) or "
                         "server=ws://host:port (a running robopolicy-serve)")
    if cfg.clock not in ("real", "sim"):
        raise ValueError(f"deploy: clock must be 'real' or 'sim', got {cfg.clock!r}")
    if cfg.clock == "sim" and cfg.robot != "sim":
        raise ValueError("deploy: clock=sim only works with robot=sim (a real robot lives in real time)")
    if cfg.episodes < 1:
        raise ValueError(f"deploy: episodes must be >= 1, got {cfg.episodes}")
    if cfg.seed_split not in ("train", "eval"):
        raise ValueError(f"deploy: seed_split must be 'train' or 'eval', got {cfg.seed_split!r}")

    clock = SimClock() if cfg.clock == "sim" else RealClock()
    policy_info, make_source, default_out = _policy_side(cfg)
    hz = float(cfg.hz) if cfg.hz is not None else float(policy_info["fps"])
    if not hz > 0:
        raise ValueError(f"deploy: hz must be > 0, got {hz}")
    if abs(hz - float(policy_info["fps"])) > 1e-6 * hz:
        warnings.warn(f"deploy: running at {hz:g} Hz a policy trained at {policy_info['fps']:g} fps: its actions "
                      f"are spaced 1/{policy_info['fps']:g} s apart in time and will be executed 1/{hz:g} s apart")
    robot, env = _make_robot(cfg, policy_info, clock)
    source: Any = None
    loop: Any = None
    previous_sigint = None
    episodes: list[dict[str, Any]] = []
    estop = EmergencyStop(cfg.safety.estop_file)
    log = TimingLog(hz)
    try:  # from here on the robot is closed whatever fails
        out = Path(cfg.output) if cfg.output else default_out(env or cfg.robot, deploy_tag(cfg, robot))
        source = make_source(1.0 / hz)
        scheduler = make_scheduler(cfg.scheduler, **dict(cfg.scheduler_kwargs))
        loop_cfg = LoopConfig(hz=hz, max_steps=cfg.max_steps, duration_s=cfg.duration_s,
                              block_on_inference=cfg.block_on_inference, stop_on_success=cfg.stop_on_success)
        loop = ControlLoop(robot, source, scheduler, loop_cfg, safety=cfg.safety, clock=clock, estop=estop,
                           task=cfg.instruction)
        previous_sigint = estop.install_sigint()
        for i in range(cfg.episodes):
            seed = (robot.suite.trial_seed(robot.task, cfg.trial + i, cfg.seed_split)
                    if cfg.robot == "sim" else None)
            # The evaluator's per-episode noise stream (a server draws its own noise).
            noise_seed = (episode_noise_seed(cfg.seed, seed if seed is not None else cfg.trial + i)
                          if cfg.server is None else None)
            res = loop.run_episode(seed=seed, log=log, noise_seed=noise_seed)
            episodes.append({"trial": cfg.trial + i, "seed": seed, "noise_seed": noise_seed, **res.to_dict()})
            if progress:
                t = res.timing
                print(f"episode {i}: {'success' if res.success else 'failure'} after {res.steps} steps "
                      f"({res.stop_reason}); jitter p99 {(t.get('jitter_ms') or {}).get('p99') or 0:.2f} ms, "
                      f"{t.get('deadline_misses', 0)} deadline misses, holds {res.safety_stats}", flush=True)
            if res.stop_reason in ("estop", "stale_obs"):
                break  # a stop is final: no further episodes without the operator
    except BaseException:
        if log.ticks:  # what happened up to the failure is what one needs to debug it
            log.save(out)
        raise
    finally:
        if previous_sigint is not None:
            signal.signal(signal.SIGINT, previous_sigint)
        if loop is not None:
            loop.close()
        robot.close()
        if hasattr(source, "close"):
            source.close()

    k = sum(e["success"] for e in episodes)
    result = {
        "robot": cfg.robot, "env": env, "task": getattr(robot, "task", None), "hz": hz,
        "scheduler": cfg.scheduler, "scheduler_kwargs": dict(cfg.scheduler_kwargs), "clock": cfg.clock,
        "source": cfg.server or str(policy_info.get("checkpoint")),
        "episodes": len(episodes), "successes": k,
        "success_rate": k / len(episodes), "ci95": list(wilson_interval(k, len(episodes))),
        "mean_steps": sum(e["steps"] for e in episodes) / len(episodes),
        "timing": log.summary(), "per_episode": episodes, "out_dir": str(out),
    }
    files = log.save(out)
    result["files"] = {k2: str(v) for k2, v in files.items()}
    if cfg.plot:
        png = log.plot(out / "timing.png", title=f"{env or cfg.robot} via {cfg.scheduler}")
        if png is not None:
            result["files"]["plot"] = str(png)
    (out / "summary.json").write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    result["files"]["summary"] = str(out / "summary.json")
    return result


def _json_default(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return str(obj)


def _policy_side(cfg: DeployJobConfig):
    """(policy facts, source factory(dt), output-folder factory(env, tag)) for a checkpoint or a server."""
    from robopolicy.paths import results_dir

    if cfg.server is not None:
        from robopolicy.deploy.client import PolicyClient

        probe = PolicyClient(cfg.server, timeout_s=cfg.server_timeout_s)
        hello = probe.connect()  # fails clearly when no server is running
        probe.close()
        meta = dict(hello.get("metadata") or {})
        info = {"fps": float(hello["fps"]), "cameras": [k for k in hello["spec"]["keys"] if ".images." in k],
                "env": meta.get("env"), "obs": meta.get("obs"), "image_size": meta.get("image_size"),
                "checkpoint": meta.get("checkpoint")}
        def server_out(env: str, tag: str | None) -> Path:
            served = info.get("checkpoint")
            if not served or not Path(served).is_dir():
                raise ValueError(f"deploy: results go under the served checkpoint's step folder ({served or 'not named'} "
                                 f"in the server's hello), which is not on this machine: pass output=<folder>")
            return results_dir(served, "deploy", env, tag)

        return info, lambda dt: PolicyClient(cfg.server, dt=dt, timeout_s=cfg.server_timeout_s), server_out

    import torch

    from robopolicy.deploy.action_source import PolicySource
    from robopolicy.device import pick_device
    from robopolicy.train.checkpoint import load_policy, resolve_checkpoint

    if cfg.torch_threads is not None:
        torch.set_num_threads(int(cfg.torch_threads))
    step_dir = resolve_checkpoint(cfg.checkpoint)
    torch.manual_seed(cfg.seed)
    policy = load_policy(step_dir, use_ema=cfg.use_ema, device=pick_device(cfg.device))
    info = {"fps": float(policy.features.fps), "checkpoint": str(step_dir), **checkpoint_env(step_dir, policy)}
    return (info, lambda dt: PolicySource(policy, n_envs=1, dt=dt),
            lambda env, tag: results_dir(step_dir, "deploy", env, tag))


def deploy_tag(cfg: DeployJobConfig, robot: Any) -> str | None:
    """The settings of ``cfg`` that change what is measured, as the default results folder's
    suffix (None: defaults): the task (suites with several), server, clock sim, the scheduler,
    the rate when it is not the policy's, seed<seed>."""
    suite = getattr(robot, "suite", None)
    parts = [robot.task] if suite is not None and len(suite.tasks) > 1 else []
    parts += ["server"] if cfg.server else []
    parts += ["sim"] if cfg.clock == "sim" else []
    parts += [cfg.scheduler] if cfg.scheduler != "sync" else []
    parts += [f"{cfg.hz:g}hz"] if cfg.hz is not None else []
    parts += [f"seed{cfg.seed}"] if cfg.seed != 0 else []
    return "_".join(parts) or None


def checkpoint_env(step_dir: Path, policy: Any) -> dict[str, Any]:
    """The env, observation mode and image size a checkpoint was trained with (from its
    config.yaml, else from the policy's features)."""
    from robopolicy.train.checkpoint import load_train_config

    cams = policy.features.cameras
    train_cfg = load_train_config(step_dir)
    size = int(next(iter(cams.values()))[1]) if cams else None
    return {"env": train_cfg.get("env"), "obs": train_cfg.get("obs", "image" if cams else "state"),
            "image_size": int(train_cfg.get("image_size", size or 84)), "cameras": list(cams)}


def _make_robot(cfg: DeployJobConfig, info: dict[str, Any], clock: Any):
    """(robot, env name) for robot=sim or robot=package.module:Class."""
    if cfg.robot == "sim":
        from envs import make_suite

        from robopolicy.deploy.robot import SimRobot

        env = cfg.env or info.get("env")
        if env is None:
            raise ValueError("deploy: the checkpoint does not name its env (no config.yaml): pass env=<suite>")
        obs = info.get("obs") or ("image" if info.get("cameras") else "state")
        kwargs = {"image_size": int(info["image_size"])} if obs == "image" and info.get("image_size") else {}
        suite = make_suite(env, obs=obs, **kwargs)
        return SimRobot(suite, cfg.task, clock=clock), env
    module_name, _, cls_name = cfg.robot.partition(":")
    if not cls_name:
        raise ValueError(f"deploy: robot must be 'sim' or 'package.module:Class', got {cfg.robot!r}")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"deploy: cannot load robot class {cfg.robot!r}: {e}") from None
    robot = cls(**dict(cfg.robot_kwargs))
    for attr in ("reset", "observe", "apply", "close", "action_low", "action_high"):
        if not hasattr(robot, attr):
            raise TypeError(f"deploy: robot {cfg.robot} lacks .{attr} (see robopolicy.deploy.robot.Robot)")
    return robot, cfg.env
