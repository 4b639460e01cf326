"""``robopolicy-serve`` as a library call: load a checkpoint and serve it over websocket."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING


@dataclass
class ServeJobConfig:
    """Serve a checkpoint to robot-side clients (robopolicy.deploy.client.PolicyClient)."""

    checkpoint: str = MISSING
    """A run folder (its newest checkpoint) or a step_<N> folder."""
    host: str = "127.0.0.1"
    """Interface to listen on (0.0.0.0 for every interface: only on a trusted network, there is no auth)."""
    port: int = 8765
    """TCP port (0: any free port, printed at start)."""
    max_message_mb: float = 16.0
    """Largest request in MiB answered normally; larger ones get an 'oversized' error reply."""
    hz: Optional[float] = None
    """Action spacing the server labels chunks with, in Hz (default: the policy's training fps)."""
    use_ema: bool = True
    """Serve the EMA weights."""
    device: str = "auto"
    """auto | cpu | cuda."""
    seed: int = 0
    """Seed of the policy's sampling noise."""
    torch_threads: Optional[int] = None
    """torch intra-op threads (default: torch's choice)."""


def build_server(cfg: ServeJobConfig):
    """The ``PolicyServer`` for ``cfg`` (not started)."""
    import torch

    from robopolicy.deploy.job import checkpoint_env
    from robopolicy.deploy.server import PolicyServer
    from robopolicy.device import pick_device
    from robopolicy.train.checkpoint import load_policy, resolve_checkpoint

    if cfg.torch_threads is not None:
        torch.set_num_threads(int(cfg.torch_threads))
    if not cfg.max_message_mb > 0:
        raise ValueError(f"serve: max_message_mb must be > 0, got {cfg.max_message_mb}")
    step_dir = resolve_checkpoint(cfg.checkpoint)
    torch.manual_seed(cfg.seed)
    policy = load_policy(step_dir, use_ema=cfg.use_ema, device=pick_device(cfg.device))
    meta = {"checkpoint": str(step_dir), "step": getattr(policy, "checkpoint_step", None),
            **{k: v for k, v in checkpoint_env(step_dir, policy).items() if k != "cameras"}}
    return PolicyServer(policy, host=cfg.host, port=cfg.port, max_message_bytes=int(cfg.max_message_mb * 2**20),
                        dt=None if cfg.hz is None else 1.0 / float(cfg.hz), metadata=meta)


def run_serve(cfg: ServeJobConfig) -> None:
    """Serve until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = build_server(cfg)
    print(f"serving {server.metadata['checkpoint']} on {server.host}, port {server.port or 'any free'} "
          f"(the bound address is logged below; Ctrl-C to stop)", flush=True)
    server.serve_forever()
