"""Reliability of the deploy path: the policy server killed mid-episode, 1000 fuzzed malformed
messages, and a stale-observation stop.

    python scripts/bench_deploy_reliability.py [checkpoint=<state run>] [--fuzz 1000]

1. ``robopolicy-serve`` in a child process is SIGKILLed mid-episode of a ``robopolicy-deploy``
   run (server=...) and restarted: the loop must hold the robot while it is down and resume.
2. ``--fuzz`` random malformed requests (garbage bytes, truncations, wrong version/type/shape/
   dtype, non-finite values, oversized frames, ...) on one connection: each must get an error
   reply, and the server must still answer valid requests (checked every 100 messages).
3. The robot's observation stream freezes: the watchdog must hold the robot after ``stale_obs_s``
   and end the run after ``stale_stop_s``.

Writes the "Deploy: reliability" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


def killed_server(ckpt: Path, tmp: Path, hz: float, duration: float, kill_at: float) -> dict:
    from robopolicy.deploy.job import DeployJobConfig, run_deploy
    from robopolicy.deploy.testing import free_port, start_server_process

    port = free_port()
    log = tmp / "serve.log"
    servers = [start_server_process(ckpt, port, log, extra_args=("torch_threads=1",))]
    events: dict[str, float] = {}

    def kill_and_restart() -> None:
        events["kill"] = time.monotonic()
        servers[0].send_signal(signal.SIGKILL)
        servers[0].wait()
        servers.append(start_server_process(ckpt, port, log, extra_args=("torch_threads=1",)))
        events["back"] = time.monotonic()  # /healthz answers again

    killer = threading.Timer(kill_at, kill_and_restart)
    out = tmp / "killed"
    cfg = DeployJobConfig(server=f"ws://127.0.0.1:{port}", hz=hz, duration_s=duration, stop_on_success=False,
                          scheduler="async", output=str(out), server_timeout_s=2.0, plot=True)
    killer.start()
    try:
        result = run_deploy(cfg, progress=False)
    finally:
        killer.join()
        for p in servers:
            p.kill()
    with open(out / "timing.csv") as f:
        ticks = [(float(r["t_start"]), r["hold"]) for r in csv.DictReader(f)]
    down = [t for t, h in ticks if h == "server_down"]
    after = [t for t, h in ticks if not h and down and t > down[-1]]
    ep = result["per_episode"][0]
    return {"ok": bool(down) and bool(after) and ep["stop_reason"] == "duration",
            "first_hold_s": down[0] - events["kill"] if down else None,
            "held_s": down[-1] - down[0] if down else None,
            "restart_s": events["back"] - events["kill"],
            "resume_after_back_s": after[0] - events["back"] if after else None,
            "holds": len(down), "errors": ep["inference_errors"], "ticks": len(ticks)}


def fuzz(ckpt: Path, tmp: Path, n: int) -> dict:
    import numpy as np
    from websockets.sync.client import connect

    from robopolicy.deploy.client import _CONNECT_KW
    from robopolicy.deploy.protocol import pack, unpack
    from robopolicy.deploy.testing import free_port, malformed_messages, start_server_process
    from robopolicy.train.checkpoint import load_policy

    policy = load_policy(ckpt)
    key, window = "observation.state", (1, int(policy.config.n_obs_steps), int(policy.features.state_dim))
    port = free_port()
    limit_mb = 1 / 16  # a small request limit keeps the oversized cases cheap to send
    server = start_server_process(ckpt, port, tmp / "fuzz_serve.log",
                                  extra_args=("torch_threads=1", f"max_message_mb={limit_mb}"))
    codes: dict[str, int] = {}
    wrong, valid_ok, valid = 0, 0, 0
    gen = malformed_messages(np.random.default_rng(0), key, window, int(limit_mb * 2**20))
    good = pack({"type": "infer", "id": 1, "obs": {key: np.zeros(window, np.float32)}})
    try:
        ws = connect(f"ws://127.0.0.1:{port}", compression=None, max_size=2**26, **_CONNECT_KW)
        unpack(ws.recv(timeout=10))
        t0 = time.perf_counter()
        for i in range(n):
            data, expected = next(gen)
            ws.send(data)
            reply = unpack(ws.recv(timeout=10))
            codes[reply.get("code", reply["type"])] = codes.get(reply.get("code", reply["type"]), 0) + 1
            wrong += int(reply["type"] != "error" or (expected is not None and reply["code"] != expected))
            if i % 100 == 99 or i == n - 1:
                ws.send(good)
                r = unpack(ws.recv(timeout=30))
                valid += 1
                a = r.get("actions")
                valid_ok += int(r["type"] == "chunk" and r["id"] == 1 and a.shape[0] == 1
                                and a.shape[2] == policy.features.action_dim and np.isfinite(a).all())
        elapsed = time.perf_counter() - t0
        ws.send(pack({"type": "health", "id": 2}))
        health = unpack(ws.recv(timeout=10))
        ws.close()
    finally:
        server.kill()
        server.wait()
    return {"ok": wrong == 0 and valid_ok == valid and health["errors"] == n, "messages": n, "wrong": wrong,
            "codes": codes, "valid": f"{valid_ok}/{valid}", "seconds": elapsed, "server_errors": health["errors"]}


def stale_stop(ckpt: Path, hz: float, freeze_after: int, stale_stop_s: float) -> dict:
    import numpy as np

    from robopolicy.deploy import ControlLoop, PolicySource, RealClock, SafetyConfig, SimRobot, make_scheduler
    from robopolicy.deploy.job import checkpoint_env
    from robopolicy.deploy.loop import LoopConfig
    from robopolicy.deploy.testing import FrozenObservations
    from robopolicy.train.checkpoint import load_policy, resolve_checkpoint
    from envs import make_suite

    policy = load_policy(ckpt)
    env = checkpoint_env(resolve_checkpoint(ckpt), policy)["env"] or "pushblock"
    clock = RealClock()
    robot = FrozenObservations(SimRobot(make_suite(env), clock=clock), freeze_after=freeze_after)
    safety = SafetyConfig(stale_stop_s=stale_stop_s)
    cfg = LoopConfig(hz=hz, stop_on_success=False, stop_on_done=False, duration_s=freeze_after / hz + 10)
    with ControlLoop(robot, PolicySource(policy, dt=1 / hz), make_scheduler("async"), cfg, safety=safety,
                     clock=clock) as loop:
        res = loop.run_episode(seed=0)
    ticks = res.log.ticks
    first = next(i for i, t in enumerate(ticks) if t.hold == "stale_obs")
    held = robot.applied[first:]
    return {"ok": res.stop_reason == "stale_obs" and all(np.all(a == 0) for a in held),
            "stale_after_s": ticks[first].t_start - robot.frozen_at, "threshold_s": loop.stale_obs_s,
            "stop_after_s": ticks[-1].t_start - robot.frozen_at, "stale_stop_s": stale_stop_s,
            "held_ticks": len(held), "reason": res.stop_reason}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="a state checkpoint (default: an untrained pushblock policy)")
    ap.add_argument("--fuzz", type=int, default=1000, help="malformed messages to send")
    ap.add_argument("--hz", type=float, default=10.0, help="control rate of the killed-server run")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of the killed-server run")
    ap.add_argument("--no-doc", action="store_true", help="print the table only")
    args = ap.parse_args([f"--{a}" if "=" in a and not a.startswith("-") else a for a in sys.argv[1:]])

    import torch

    from robopolicy.benchmarks import provenance, write_section
    from robopolicy.deploy.testing import load_note, save_untrained_checkpoint

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_deploy_reliability_"))
    ckpt = Path(args.checkpoint) if args.checkpoint else save_untrained_checkpoint(tmp / "run", "pushblock", tiny=False)

    k = killed_server(ckpt, tmp, args.hz, args.duration, kill_at=2.0)
    print("killed server:", k, flush=True)
    f = fuzz(ckpt, tmp, args.fuzz)
    print("fuzz:", f, flush=True)
    s = stale_stop(ckpt, hz=20.0, freeze_after=40, stale_stop_s=1.0)
    print("stale obs:", s, flush=True)

    def fmt(x):
        return "-" if x is None else f"{x:.2f}"

    codes = ", ".join(f"{c} {v}" for c, v in sorted(f["codes"].items()))
    rows = [
        f"| server SIGKILLed mid-episode, restarted | {'pass' if k['ok'] else 'FAIL'} | first hold {fmt(k['first_hold_s'])} s "
        f"after the kill; held {fmt(k['held_s'])} s ({k['holds']} ticks, {k['errors']} failed requests) while the "
        f"server restarted ({fmt(k['restart_s'])} s to /healthz); policy actions again {fmt(k['resume_after_back_s'])} s "
        f"after it was back; run completed ({k['ticks']} ticks at {args.hz:g} Hz) |",
        f"| {f['messages']} fuzzed malformed messages | {'pass' if f['ok'] else 'FAIL'} | {f['messages'] - f['wrong']}/"
        f"{f['messages']} got the expected error reply ({codes}) in {f['seconds']:.2f} s; valid requests answered "
        f"{f['valid']} (every 100 messages); server counted {f['server_errors']} errors, still serving |",
        f"| observation stream frozen (20 Hz) | {'pass' if s['ok'] else 'FAIL'} | held {s['stale_after_s']:.3f} s after the "
        f"last fresh frame (threshold {s['threshold_s']:.3f} s); run stopped {s['stop_after_s'] - s['stale_after_s']:.2f} s "
        f"after the first hold (stale_stop_s {s['stale_stop_s']:g}); every command after the first hold was the hold action |",
    ]
    body = (f"Policy: {'checkpoint ' + str(args.checkpoint) if args.checkpoint else 'untrained Diffusion Policy (default size)'}"
            ", pushblock simulated robot, real-time loop, scheduler `async`.\n\n| test | result | details |\n|---|---|---|\n"
            + "\n".join(rows) + "\n\n" + provenance() + load_note())
    print(body)
    if not args.no_doc:
        print(f"wrote {write_section('Deploy: reliability', body)}")
    if not (k["ok"] and f["ok"] and s["ok"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
