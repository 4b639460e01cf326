"""World-model play data from a trained policy's rollouts (PolicyExpert through the recorder), and
training on several play datasets at once (extra_datasets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.unit.rl_fakes import make_checkpoints


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    torch.set_num_threads(1)
    return make_checkpoints(tmp_path_factory.mktemp("policy_play"))


def test_policy_expert_replays_the_evaluators_actions(ckpts):
    """The recorder's PolicyExpert executes each chunk in order and is reproducible per seed."""
    from envs import make_suite
    from robopolicy.deploy.action_source import PolicyExpert
    from robopolicy.train.checkpoint import load_policy

    suite = make_suite("pushblock", obs="state")
    env = suite.make_env(suite.tasks[0])
    policy = load_policy(ckpts["policy"])
    runs = []
    for _ in range(2):
        actor = PolicyExpert(policy)
        obs, _ = env.reset(seed=3)
        actor.reset(noise_seed=11)
        acts = []
        for _ in range(10):  # 10 steps: chunks of n_action_steps=4 -> 3 policy calls
            a = actor.act(obs)
            acts.append(a)
            obs, *_ = env.step(a)
        runs.append(np.stack(acts))
    env.close()
    assert runs[0].shape == (10, 2) and np.isfinite(runs[0]).all()
    np.testing.assert_array_equal(runs[0], runs[1])
    assert len(actor.source.latencies) == 3


def test_play_recording_with_a_policy_and_training_on_two_datasets(ckpts, tmp_path):
    from robopolicy.world_model.data import concat_episodes, load_episodes
    from robopolicy.world_model.play import record_play_dataset
    from robopolicy.world_model.train import WorldModelTrainConfig, run_wm_training
    from tests.unit.rl_fakes import TINY_WM
    from robopolicy.world_model.config import StateWorldModelConfig

    out = tmp_path / "policy_play"
    s = record_play_dataset("pushblock", out, 2, num_workers=0, progress=False, noise_levels=(0.0,),
                            policy=str(ckpts["policy"]))
    assert s.episodes == 2
    pol, expert = load_episodes(out), load_episodes(ckpts["play"])
    # an untrained policy does not act like the expert
    assert not np.allclose(pol.actions[: len(expert.actions)][:20], expert.actions[:20])
    both = concat_episodes([expert, pol])
    assert both.num_episodes == 4 and len(both.states) == len(expert.states) + len(pol.states)
    assert both.bounds[2, 0] == len(expert.states) and both.stats is expert.stats
    cfg = WorldModelTrainConfig(env="pushblock", dataset=str(ckpts["play"]), extra_datasets=[str(out)],
                                output_dir=str(tmp_path / "ckpt"), run_name="wm2", steps=2, batch_size=8,
                                warmup_steps=0, num_threads=1, device="cpu", model=StateWorldModelConfig(**TINY_WM))
    res = run_wm_training(cfg, progress=False)
    assert res["train_steps"] == 2
    with pytest.raises(FileNotFoundError, match="extra_datasets"):
        run_wm_training(WorldModelTrainConfig(env="pushblock", dataset=str(ckpts["play"]), steps=1,
                                              extra_datasets=[str(tmp_path / "nope")],
                                              output_dir=str(tmp_path / "ckpt"), run_name="wm3"), progress=False)


def test_a_recording_made_before_a_spec_field_existed_still_resumes():
    from robopolicy.data.record import _same_setting

    old = {"type": "PlaySpec", "noise_levels": [0.0, 0.1]}
    assert _same_setting(old, {**old, "policy": None})  # field added later, unused now: same recording
    assert not _same_setting(old, {**old, "policy": "ckpt"})  # used now: another recording
    assert not _same_setting({**old, "policy": None}, old)  # the recording had a field that is gone
    assert not _same_setting(old, {"type": "PlaySpec", "noise_levels": [0.0, 0.3]})
