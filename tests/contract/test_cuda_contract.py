"""CUDA paths of every registered policy family, checked against the CPU path (skipped without a GPU).

The same weights and the same batch give the same loss, gradients and actions on CUDA as on the
CPU. Random draws differ between devices, so every check runs under ``cpu_random``: torch's random
functions draw on the CPU from the global CPU generator and move the result to the requested
device, which makes both runs see identical noise. TF32 is off, so fp32 results agree to float
rounding. bf16 autocast (what ``precision=bf16`` uses) must stay finite and close to fp32, and the
one trainer must train, checkpoint and resume on CUDA with bf16.

Run on a GPU machine: ``python -m pytest tests/contract/test_cuda_contract.py -q``.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from test_policy_contract import ACTION_DIM, FEATURES, _batch, _build, _obs  # same directory

from robopolicy import registry

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA_FEATURES = ["state", "state+image"]  # language needs the offline MiniLM package, not CUDA-specific
_RANDOM_FNS = ("randn", "rand", "randint", "randn_like", "rand_like", "multinomial")


@contextlib.contextmanager
def cpu_random(seed: int):
    """Draw every torch random tensor on the CPU (global CPU generator), then move it to the
    device that was asked for: CPU and CUDA runs then use identical noise."""
    originals = {name: getattr(torch, name) for name in _RANDOM_FNS}

    def wrap(name):
        fn = originals[name]

        def drawn_on_cpu(*args, **kwargs):
            gen = kwargs.get("generator")
            if gen is not None and gen.device.type != "cpu":
                kwargs.pop("generator")
            if name.endswith("_like") or name == "multinomial":
                src, *rest = args
                device = kwargs.pop("device", None) or src.device
                return fn(src.detach().cpu(), *rest, **kwargs).to(device)
            device = kwargs.pop("device", None) or "cpu"
            return fn(*args, **kwargs).to(device)

        return drawn_on_cpu

    torch.manual_seed(seed)
    for name in _RANDOM_FNS:
        setattr(torch, name, wrap(name))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(torch, name, fn)


@pytest.fixture(autouse=True)
def _no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(params=registry.names("policy"))
def name(request):
    return request.param


@pytest.fixture(params=CUDA_FEATURES)
def features(request):
    return FEATURES[request.param]


def _to(obj: dict, device) -> dict:
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in obj.items()}


def _pair(name, features):
    """The same policy on the CPU and on CUDA, in eval mode (no dropout: its masks are device draws
    too, and the comparison is about the math)."""
    cpu = _build(name, features).eval()
    return cpu, copy.deepcopy(cpu).cuda()


def test_loss_and_gradients_match_cpu(name, features):
    cpu, gpu = _pair(name, features)
    batch = _batch(features, cpu.config, torch.Generator().manual_seed(1), cpu.delta_timestamps())
    with cpu_random(3):
        loss_c, _ = cpu.loss(batch)
    with cpu_random(3):
        loss_g, _ = gpu.loss(_to(batch, "cuda"))
    assert loss_g.device.type == "cuda"
    torch.testing.assert_close(loss_g.cpu(), loss_c, rtol=1e-4, atol=1e-5)
    loss_c.backward()
    loss_g.backward()
    for (n, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters()):
        if pc.grad is None:
            assert pg.grad is None, n
            continue
        err = (pg.grad.cpu() - pc.grad).norm() / pc.grad.norm().clamp_min(1e-8)
        assert err < 1e-3, f"{name}: gradient of {n} differs by {err:.2e} (relative) between CPU and CUDA"


def test_actions_match_cpu(name, features):
    cpu, gpu = _pair(name, features)
    obs = _obs(features, cpu.config.n_obs_steps, torch.Generator().manual_seed(2))
    with cpu_random(5):
        a_c, s_c = cpu.act(obs, cpu.init_state(obs["observation.state"].shape[0]))
        a_c2, _ = cpu.act(obs, s_c)  # a second call exercises whatever the state carries (buffer, warm start)
    with cpu_random(5):
        a_g, s_g = gpu.act(_to(obs, "cuda"), gpu.init_state(obs["observation.state"].shape[0]))
        a_g2, _ = gpu.act(_to(obs, "cuda"), s_g)
    assert a_g.device.type == "cuda" and a_g.shape == a_c.shape
    span = 4.0  # the synthetic action range is [-2, 2]
    for got, want in ((a_g, a_c), (a_g2, a_c2)):
        close = (got.cpu() - want).abs() <= 1e-3 * span
        # Discrete decoders take argmaxes: a float-rounding tie may pick a neighbouring bin.
        needed = 0.95 if name == "ddvla" else 1.0
        assert close.float().mean() >= needed, f"{name}: CUDA actions differ from CPU ({(~close).sum()} of {close.numel()})"


def test_bf16_autocast_loss_is_close_to_fp32(name, features):
    _, gpu = _pair(name, features)
    batch = _to(_batch(features, gpu.config, torch.Generator().manual_seed(1), gpu.delta_timestamps()), "cuda")
    with cpu_random(3):
        fp32, _ = gpu.loss(batch)
    with cpu_random(3), torch.autocast("cuda", dtype=torch.bfloat16):
        bf16, _ = gpu.loss(batch)
    assert torch.isfinite(bf16)
    bf16, fp32 = float(bf16.detach()), float(fp32.detach())
    assert abs(bf16 - fp32) <= 0.05 * abs(fp32) + 1e-3, (bf16, fp32)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        a, _ = gpu.act(_to(_obs(features, gpu.config.n_obs_steps, torch.Generator().manual_seed(2)), "cuda"),
                       gpu.init_state(3))
    assert a.dtype == torch.float32 and torch.isfinite(a).all()


class _Windows(torch.utils.data.Dataset):
    """Fixed synthetic training windows: action = a fixed linear map of the newest state."""

    def __init__(self, features, config, n=256):
        g = torch.Generator().manual_seed(0)
        self.items = []
        w = torch.randn(features.state_dim, ACTION_DIM, generator=g) * 0.3
        for _ in range(n):
            state = torch.rand(config.n_obs_steps, features.state_dim, generator=g) * 4 - 1
            action = (state[-1] @ w).clamp(-2, 2).expand(config.horizon, ACTION_DIM).clone()
            self.items.append({"observation.state": state, "action": action,
                               "action_is_pad": torch.zeros(config.horizon, dtype=torch.bool)})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_trainer_trains_checkpoints_and_resumes_on_cuda_bf16(name, tmp_path):
    from robopolicy.train.checkpoint import resolve_checkpoint
    from robopolicy.train.config import TrainConfig
    from robopolicy.train.trainer import Trainer

    features = FEATURES["state"]
    policy = _build(name, features)
    data = _Windows(features, policy.config)
    cfg_cls = registry.get("policy", name).config_class
    cfg = TrainConfig(policy=cfg_cls.tiny(), device="cuda", precision="bf16", steps=60, batch_size=32, lr=1e-3,
                      warmup_steps=0, save_every=30, log_every=10, num_workers=0)
    trainer = Trainer(policy, data, cfg, tmp_path / "run", progress=False)
    assert trainer.accelerator.device.type == "cuda"
    ema = trainer.fit()
    assert next(ema.parameters()).device.type == "cuda"
    assert resolve_checkpoint(tmp_path / "run").name == "step_00000060"

    resumed = _build(name, features)
    cfg2 = copy.deepcopy(cfg)
    cfg2.steps, cfg2.resume = 70, True
    t2 = Trainer(resumed, data, cfg2, tmp_path / "run", progress=False)
    t2.fit()
    assert t2.step == 70 and resolve_checkpoint(tmp_path / "run").name == "step_00000070"
    # the trained policy acts on CUDA
    obs = _to(_obs(features, policy.config.n_obs_steps, torch.Generator().manual_seed(4)), "cuda")
    a, _ = ema.act(obs, ema.init_state(3))
    assert a.device.type == "cuda" and torch.isfinite(a).all()
