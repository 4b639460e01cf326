"""Timing worker for LeRobot 0.4.4's DiffusionPolicy, run by scripts/bench_policy_latency.py with
the Python of a separate LeRobot virtual environment (see shared ANCHORS.md for its recipe).

It imports only lerobot, torch, diffusers (through lerobot) and the standard library, never
robopolicy. Protocol: one JSON object per line on stdin, one JSON reply per line on stdout.

    -> {"cmd": "build", "config": "state"}                      <- {"ok": true, "params": 4.7e6}
    -> {"cmd": "time", "config": "state", "measurement": "ddim10", "reps": 9, "warmup": 1}
                                                                 <- {"ok": true, "times_ms": [...]}
    -> {"cmd": "quit"}

On start it prints {"ready": true, "lerobot": ..., "torch": ..., "threads": ...}. Anything the
libraries print goes to stderr, so stdout carries only the protocol. Measurements:
* ``ddim10`` / ``ddpm100``: ``predict_action_chunk`` at batch 1 under ``torch.inference_mode``,
  the model's noise scheduler set to DDIM with 10 steps / DDPM with 100 steps;
* ``train``: ``policy.forward`` (the loss) + backward + a step of the optimizer LeRobot's trainer builds for it
  (``config.get_optimizer_preset()``: torch.optim.Adam, betas 0.95/0.999, weight decay 1e-6), batch 64.

    python scripts/lerobot_worker.py --threads 2     # normally started by bench_policy_latency.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

STATE_DIM, ACTION_DIM, BATCH = 39, 4, 64
ROBOT_STATE_DIM = 4  # pure-state config: 4-d observation.state + 35-d observation.environment_state = 39
IMAGE_SHAPE, CROP = (3, 84, 84), (76, 76)
CONFIGS = ("state", "state-large", "image")
MEASUREMENTS = ("ddim10", "ddpm100", "train")


def build_config(name: str):
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose from {CONFIGS}")
    if name == "image":
        inputs = {
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,)),
            "observation.images.corner": PolicyFeature(type=FeatureType.VISUAL, shape=IMAGE_SHAPE),
        }
    else:
        # LeRobot's DiffusionPolicy needs an image or observation.environment_state; split the 39-d
        # state so that the UNet's global condition has the same width as ours (2 x 39).
        inputs = {
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(ROBOT_STATE_DIM,)),
            "observation.environment_state": PolicyFeature(type=FeatureType.ENV, shape=(STATE_DIM - ROBOT_STATE_DIM,)),
        }
    return DiffusionConfig(
        device="cpu",
        input_features=inputs,
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))},
        n_obs_steps=2,
        horizon=16,
        n_action_steps=8,
        down_dims=(512, 1024, 2048) if name == "state-large" else (64, 128, 256),
        kernel_size=5,
        n_groups=8,
        diffusion_step_embed_dim=128,
        use_film_scale_modulation=True,
        vision_backbone="resnet18",
        pretrained_backbone_weights=None,
        use_group_norm=True,
        crop_shape=CROP,
        crop_is_random=True,
        spatial_softmax_num_keypoints=32,
        noise_scheduler_type="DDPM",
        num_train_timesteps=100,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        clip_sample=True,
        clip_sample_range=1.0,
        num_inference_steps=100,
        do_mask_loss_for_padding=True,  # ours masks padded actions too
    )


class Bench:
    """One LeRobot DiffusionPolicy per config, its inputs, schedulers and optimizer."""

    def __init__(self, name: str):
        import torch
        from diffusers.schedulers.scheduling_ddim import DDIMScheduler
        from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
        from lerobot.policies.utils import populate_queues

        torch.manual_seed(0)
        self.policy = DiffusionPolicy(build_config(name))
        self.params = sum(p.numel() for p in self.policy.parameters())
        self.image = name == "image"
        model = self.policy.diffusion
        ddpm = model.noise_scheduler
        self.schedulers = {"ddpm100": (ddpm, 100), "ddim10": (DDIMScheduler.from_config(ddpm.config), 10)}

        # Batch-1 observation, as select_action would queue it (images stacked per camera).
        obs = self._obs(1, steps=None)
        self.policy.eval()
        self.policy.reset()
        populate_queues(self.policy._queues, obs)
        self.obs = obs
        self.train_batch = self._obs(BATCH, steps=2)
        if self.image:
            self.train_batch.pop("observation.images")
            self.train_batch["observation.images.corner"] = torch.rand(BATCH, 2, *IMAGE_SHAPE)
        self.train_batch["action"] = torch.rand(BATCH, 16, ACTION_DIM) * 2 - 1
        self.train_batch["action_is_pad"] = torch.zeros(BATCH, 16, dtype=torch.bool)
        # LeRobot's own trainer optimizer for DiffusionPolicy (its get_optimizer_preset: AdamConfig).
        self.opt = self.policy.config.get_optimizer_preset().build(self.policy.get_optim_params())

    def _obs(self, b: int, steps: int | None) -> dict:
        import torch

        lead = (b,) if steps is None else (b, steps)
        if self.image:
            return {"observation.state": torch.rand(*lead, STATE_DIM) * 2 - 1,
                    "observation.images": torch.rand(*lead, 1, *IMAGE_SHAPE)}
        return {"observation.state": torch.rand(*lead, ROBOT_STATE_DIM) * 2 - 1,
                "observation.environment_state": torch.rand(*lead, STATE_DIM - ROBOT_STATE_DIM) * 2 - 1}

    def fn(self, measurement: str):
        import torch

        if measurement in self.schedulers:
            scheduler, steps = self.schedulers[measurement]

            def chunk() -> None:
                self.policy.eval()
                self.policy.diffusion.noise_scheduler = scheduler
                self.policy.diffusion.num_inference_steps = steps
                with torch.inference_mode():
                    self.policy.predict_action_chunk(self.obs)

            return chunk
        if measurement == "train":

            def step() -> None:
                self.policy.train()
                self.policy.diffusion.noise_scheduler = self.schedulers["ddpm100"][0]
                loss, _ = self.policy.forward(self.train_batch)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()

            return step
        raise ValueError(f"unknown measurement {measurement!r}; choose from {MEASUREMENTS}")


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


def serve(threads: int) -> None:
    # The protocol owns the real stdout; everything printed by the libraries goes to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    import importlib.metadata

    import torch

    torch.set_num_threads(threads)
    reply({"ready": True, "lerobot": importlib.metadata.version("lerobot"), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "python": sys.executable})
    benches: dict[str, Bench] = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "quit":
                reply({"ok": True})
                return
            name = req["config"]
            if name not in benches:
                benches[name] = Bench(name)
            bench = benches[name]
            if cmd == "build":
                reply({"ok": True, "params": bench.params})
            elif cmd == "time":
                times = time_calls(bench.fn(req["measurement"]), int(req["reps"]), int(req.get("warmup", 1)))
                reply({"ok": True, "times_ms": times})
            else:
                reply({"ok": False, "error": f"unknown cmd {cmd!r}"})
        except Exception as exc:  # report to the parent instead of dying silently
            reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    serve(ap.parse_args().threads)


if __name__ == "__main__":
    main()
