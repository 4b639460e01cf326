"""The trainer's optional ``Policy.calibrate`` hook: called on the EMA copy it evaluates and saves,
with the policy's own count of fixed training batches; never for a policy that asks for none."""

import pytest
import torch
from torch import nn

from robopolicy.policies.base import Policy, PolicyConfig
from robopolicy.types import FeatureSpec

FEATURES = FeatureSpec(action_dim=2, state_dim=3)


class _Linear(Policy):
    """A linear regressor whose ``fitted`` buffer is a statistic of its own weights."""

    def __init__(self, wants: int):
        super().__init__(PolicyConfig(n_obs_steps=1, horizon=2, n_action_steps=1), FEATURES, None)
        self.net = nn.Linear(3, 2)
        self.wants = wants
        self.register_buffer("fitted", torch.tensor(0.0))
        self.calls: list[list] = []

    def loss(self, batch):
        pred = self.net(batch["observation.state"][:, -1]).unsqueeze(1).expand(-1, 2, -1)
        return ((pred - batch["action"]) ** 2).mean(), {}

    def calibration_batches(self) -> int:
        return self.wants

    def calibrate(self, batches):
        self.calls.append(batches)
        self.fitted.copy_(self.net.weight.sum())


class _Data(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"observation.state": torch.randn(1, 3, generator=g), "action": torch.randn(2, 2, generator=g)}


def _fit(policy, tmp_path):
    from robopolicy.train.config import TrainConfig
    from robopolicy.train.trainer import Trainer

    cfg = TrainConfig(policy=policy.config, device="cpu", steps=4, batch_size=4, lr=1e-2, warmup_steps=0,
                      save_every=2, log_every=100, num_workers=0)
    trainer = Trainer(policy, _Data(), cfg, tmp_path / "run", progress=False)
    return trainer, trainer.fit()


def test_hook_runs_on_the_ema_copy_with_fixed_training_batches(tmp_path):
    policy = _Linear(wants=3)
    trainer, ema = _fit(policy, tmp_path)
    from safetensors.torch import load_file

    assert policy.calls == []  # the live policy is never calibrated
    # each EMA copy (saves at steps 2 and 4, the returned one) is calibrated once, on 3 batches of 4
    assert len(ema.calls) == 1 and len(ema.calls[0]) == 3
    assert all(b["action"].shape == (4, 2, 2) for b in ema.calls[0])
    again = trainer.ema_policy()
    assert all(torch.equal(a["action"], b["action"]) for a, b in zip(ema.calls[0], again.calls[-1]))
    with torch.no_grad():
        assert float(ema.fitted) == pytest.approx(float(ema.net.weight.sum()))
        assert float(ema.fitted) != pytest.approx(float(policy.net.weight.sum()))  # EMA != live weights
    for step in (2, 4):  # what the checkpoints saved is the calibrated EMA copy
        saved = load_file(str(tmp_path / "run" / f"step_{step:08d}" / "ema.safetensors"))
        assert float(saved["fitted"]) == pytest.approx(float(saved["net.weight"].sum()))


def test_no_hook_call_when_the_policy_asks_for_no_batches(tmp_path):
    policy = _Linear(wants=0)
    _, ema = _fit(policy, tmp_path)
    assert ema.calls == [] and float(ema.fitted) == 0.0
    # the base class default: nothing to calibrate, and calibrate is a no-op
    base = Policy(PolicyConfig(), FEATURES, None)
    assert base.calibration_batches() == 0 and base.calibrate([]) is None
