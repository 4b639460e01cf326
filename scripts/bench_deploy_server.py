"""Inference latency in-process vs through the policy server on loopback: the server's overhead.

    python scripts/bench_deploy_server.py                    # untrained default-size state policy
    python scripts/bench_deploy_server.py checkpoint=<run> --calls 500

The server runs as ``robopolicy-serve`` in a child process (as in deployment: no shared GIL). Each
remote call's overhead is its round trip minus the server's own inference time for that call (the
reply carries it), so the overhead does not depend on the policy's speed. Writes the "Deploy:
policy server overhead" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


def _ms(x, q):
    import numpy as np

    return float(np.percentile(np.asarray(x) * 1e3, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="a state checkpoint (default: an untrained default-size policy)")
    ap.add_argument("--env", default="pushblock", help="suite the untrained policy is sized for")
    ap.add_argument("--calls", type=int, default=300, help="timed calls per mode (after 10 warm-up calls)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads, in-process and in the server")
    ap.add_argument("--no-doc", action="store_true", help="print the table only")
    args = ap.parse_args([f"--{a}" if "=" in a and not a.startswith("-") else a for a in sys.argv[1:]])

    import numpy as np
    import torch

    from robopolicy.benchmarks import provenance, write_section
    from robopolicy.deploy import PolicySource
    from robopolicy.deploy.client import PolicyClient
    from robopolicy.deploy.protocol import pack
    from robopolicy.deploy.testing import free_port, load_note, save_untrained_checkpoint, start_server_process
    from robopolicy.train.checkpoint import load_policy

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_deploy_server_"))
    ckpt = args.checkpoint or save_untrained_checkpoint(tmp / "run", env=args.env, tiny=False)
    policy = load_policy(ckpt)
    state_dim = int(policy.features.state_dim)
    rng = np.random.default_rng(0)
    frames = [{"observation.state": rng.uniform(-1, 1, state_dim).astype(np.float32)} for _ in range(args.calls + 10)]

    local = PolicySource(policy, dt=0.1)
    local.reset()
    for f in frames:
        local.infer(f)
    in_process = local.latencies[10:]

    port = free_port()
    server = start_server_process(ckpt, port, tmp / "serve.log", extra_args=(f"torch_threads={args.threads}",))
    try:
        client = PolicyClient(f"ws://127.0.0.1:{port}", dt=0.1)
        client.connect()
        for f in frames:
            client.infer(f)
        remote = client.latencies[10:]
        server_infer = [t["infer_s"] for t in client.server_timings[10:]]
        server_total = [t["server_s"] for t in client.server_timings[10:]]
        request_bytes = len(pack({"type": "infer", "obs": client.history.stacked(), "task": None, "t_obs": 0.0}))
        client.close()
    finally:
        server.kill()
        server.wait()
    overhead = np.asarray(remote) - np.asarray(server_infer)
    wire = np.asarray(remote) - np.asarray(server_total)

    rows = [
        f"| in-process (`PolicySource`) | {len(in_process)} | {_ms(in_process, 50):.2f} | {_ms(in_process, 99):.2f} | - | - |",
        f"| through `robopolicy-serve` (round trip) | {len(remote)} | {_ms(remote, 50):.2f} | {_ms(remote, 99):.2f} | "
        f"{_ms(overhead, 50):.2f} | {_ms(overhead, 99):.2f} |",
        f"| of which: server inference | {len(server_infer)} | {_ms(server_infer, 50):.2f} | {_ms(server_infer, 99):.2f} | - | - |",
        f"| of which: network + encode/decode outside the server | {len(wire)} | {_ms(wire, 50):.2f} | "
        f"{_ms(wire, 99):.2f} | - | - |",
    ]
    name = f"checkpoint {args.checkpoint}" if args.checkpoint else "untrained Diffusion Policy (default size)"
    body = (f"{name}, state observations ({request_bytes} B per request), {args.threads} torch thread(s), loopback "
            f"websocket, server in a child process. Overhead = round trip - the server's inference time of the same "
            f"call.\n\n| path | calls | latency p50 (ms) | latency p99 (ms) | overhead p50 (ms) | overhead p99 (ms) |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n" + provenance() + load_note())
    print(body)
    if not args.no_doc:
        print(f"wrote {write_section('Deploy: policy server overhead', body)}")


if __name__ == "__main__":
    main()
