"""The trainer's resume and checkpoint cadence: a resume with nothing to resume says so, a
time-based checkpoint is written between the step-based ones, and a resumed run reports its
whole-run and this-process counts; the run folder of a repeated main job."""

import pytest
import torch
from torch import nn

from robopolicy.policies.base import Policy, PolicyConfig
from robopolicy.train.config import TrainConfig
from robopolicy.train.trainer import Trainer
from robopolicy.types import FeatureSpec

FEATURES = FeatureSpec(action_dim=2, state_dim=3)


class _Linear(Policy):
    def __init__(self):
        super().__init__(PolicyConfig(n_obs_steps=1, horizon=2, n_action_steps=1), FEATURES, None)
        self.net = nn.Linear(3, 2)

    def loss(self, batch):
        pred = self.net(batch["observation.state"][:, -1]).unsqueeze(1).expand(-1, 2, -1)
        return ((pred - batch["action"]) ** 2).mean(), {}


class _Data(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"observation.state": torch.randn(1, 3, generator=g), "action": torch.randn(2, 2, generator=g)}


def _trainer(run_dir, **kw):
    torch.manual_seed(0)
    cfg = TrainConfig(policy=PolicyConfig(), device="cpu", batch_size=4, lr=1e-2, warmup_steps=0, log_every=100,
                      num_workers=0, **kw)
    return Trainer(_Linear(), _Data(), cfg, run_dir, progress=False)


def _steps(run_dir):
    return sorted(int(p.name.split("_")[1]) for p in run_dir.glob("step_*"))


def test_resume_without_a_checkpoint_says_so(tmp_path, capsys):
    t = _trainer(tmp_path / "run", steps=2, save_every=100, resume=True)
    t.fit()
    out = capsys.readouterr().out
    assert f"resume=true but {tmp_path / 'run'} holds no checkpoint yet, starting from step 0" in out
    assert t.start_step == 0 and t.step == 2


def test_time_based_checkpoints_between_step_checkpoints(tmp_path):
    # save_every far beyond the run: without the time-based save only the final step is written
    _trainer(tmp_path / "off", steps=5, save_every=1000, save_every_minutes=0).fit()
    assert _steps(tmp_path / "off") == [5]
    # a tiny interval is due after every step (3 kept: checkpoint.save_checkpoint's keep_last)
    _trainer(tmp_path / "on", steps=5, save_every=1000, save_every_minutes=1e-9).fit()
    assert _steps(tmp_path / "on") == [3, 4, 5]


def test_resume_reports_whole_run_and_this_process(tmp_path, capsys):
    first = _trainer(tmp_path / "run", steps=4, save_every=2)
    first.fit()
    saved = torch.load(tmp_path / "run" / "step_00000004" / "train_state.pt", weights_only=False)
    assert saved["train_seconds"] == pytest.approx(first.train_seconds(), abs=0.5) and saved["train_seconds"] > 0
    second = _trainer(tmp_path / "run", steps=7, save_every=2, resume=True)
    second.fit()
    assert (second.start_step, second.step) == (4, 7)
    assert second.prior_seconds == saved["train_seconds"]
    assert second.train_seconds() == pytest.approx(saved["train_seconds"] + second.fit_seconds())
    assert "resumed from" in capsys.readouterr().out


def test_summary_line_after_a_resume_gives_both_counts():
    from robopolicy.cli.train import summary_line

    base = {"success_rate": None, "episodes": 0, "run_dir": "checkpoints/r", "train_steps": 1500,
            "train_minutes": 2.4, "steps_this_process": 1000, "minutes_this_process": 1.6, "resumed_from_step": 500}
    line = summary_line(base)
    assert "1500 steps, 2.4 min of training in total (1000 steps, 1.6 min in this process, resumed at step 500)" in line
    fresh = summary_line({**base, "success_rate": 0.5, "ci95": [0.3, 0.7], "episodes": 10, "resumed_from_step": 0,
                          "train_steps": 1000, "train_minutes": 1.6})
    assert fresh.startswith("success rate 50.0% over 10 episodes") and "after 1000 steps, 1.6 min of training;" in fresh


def test_a_repeated_main_job_gets_a_new_run_folder(tmp_path, capsys):
    from robopolicy.train.run import choose_run_dir

    cfg = TrainConfig(output_dir=str(tmp_path))
    default = tmp_path / "metaworld_mt1_button-press-topdown-v3_diffusion_state"
    assert choose_run_dir(cfg, "diffusion") == default  # nothing there yet
    (default / "tb").mkdir(parents=True)
    assert choose_run_dir(cfg, "diffusion") == default  # killed before its first checkpoint: reused
    (default / "step_00000010").mkdir()
    assert choose_run_dir(cfg, "diffusion") == tmp_path / "metaworld_mt1_button-press-topdown-v3_diffusion_state_2"
    assert "this one goes to" in capsys.readouterr().out
    (tmp_path / "metaworld_mt1_button-press-topdown-v3_diffusion_state_2" / "step_00000003").mkdir(parents=True)
    assert choose_run_dir(cfg, "diffusion") == tmp_path / "metaworld_mt1_button-press-topdown-v3_diffusion_state_3"
    resume = TrainConfig(output_dir=str(tmp_path), resume=True)
    assert choose_run_dir(resume, "diffusion") == default  # resume continues the named (default) run
    (tmp_path / "mine" / "step_00000001").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="mine already holds checkpoints: pass resume=true"):
        choose_run_dir(TrainConfig(output_dir=str(tmp_path), run_name="mine"), "diffusion")
