import numpy as np
import pytest
import torch
from eval_fakes import GoalPolicy, features

from robopolicy.deploy import ActionSource, PolicySource
from robopolicy.types import IMAGE_PREFIX, STATE_KEY, TASK_KEY

CAM = IMAGE_PREFIX + "cam"


def raw(step, n_envs=2, img=True):
    s = np.zeros((n_envs, 4), np.float32)
    s[:, 0] = step            # x encodes the step, goal at (1, 0)
    s[:, 2] = 1.0
    out = {STATE_KEY: s, "observation.extra": np.zeros((n_envs, 1))}  # extra keys are ignored
    if img:
        im = np.zeros((n_envs, 4, 6, 3), np.uint8)
        im[:, 0, 0] = (255, 51, 0)
        im[:, :, :, 2] = step
        out[CAM] = im
    return out


def make(n_envs=2, n_obs_steps=3, **kw):
    p = GoalPolicy(n_action_steps=4, n_obs_steps=n_obs_steps, feats=features(cameras={"cam": (3, 4, 6)}, **kw))
    return p, PolicySource(p, n_envs=n_envs)


def test_converts_raw_obs_and_stacks_consecutive_steps():
    p, src = make()
    assert isinstance(src, ActionSource)
    src.reset()
    src.observe(raw(0))
    src.observe(raw(1))
    c = src.infer(raw(2), task="reach", t_obs=12.5)
    obs = src.state.info["last_obs"]
    assert set(obs) == {STATE_KEY, CAM, TASK_KEY}
    assert obs[STATE_KEY].dtype == torch.float32 and obs[STATE_KEY].shape == (2, 3, 4)
    np.testing.assert_array_equal(obs[STATE_KEY][0, :, 0].numpy(), [0, 1, 2])
    img = obs[CAM]
    assert img.shape == (2, 3, 3, 4, 6) and img.dtype == torch.float32   # (B, T, C, H, W)
    np.testing.assert_allclose(img[0, -1, :, 0, 0].numpy(), [1.0, 0.2, 2 / 255], rtol=1e-6)
    np.testing.assert_allclose(img[1, :, 2, 1, 1].numpy(), np.array([0, 1, 2]) / 255, rtol=1e-6)
    assert obs[TASK_KEY] == ["reach", "reach"]
    # The chunk: raw units, batched, timestamped with the observation time.
    assert c.actions.shape == (2, 4, 2) and c.actions.dtype == np.float32
    np.testing.assert_allclose(c.actions[0, 0], [-1, 0])  # from x=2 toward the goal at x=1
    assert c.t_obs == 12.5 and c.dt == pytest.approx(0.1) and c.latency_s > 0
    assert src.latencies == [c.latency_s]


def test_state_lives_in_the_source_and_reset_clears_it():
    p, src = make(n_obs_steps=2)
    src.reset()
    src.infer(raw(0))
    src.infer(raw(5))
    assert src.state.step == 2 and torch.equal(src.state.tensors["calls"], torch.tensor([2.0, 2.0]))
    src.reset()
    assert src.state.step == 0 and src.history.empty
    src.infer(raw(7))
    np.testing.assert_array_equal(src.state.info["last_obs"][STATE_KEY][0, :, 0].numpy(), [7, 7])  # padded
    assert not p.training  # the source only samples


def test_unbatched_robot_obs():
    p = GoalPolicy(n_action_steps=3, n_obs_steps=1)
    src = PolicySource(p, n_envs=1, dt=0.05)
    c = src.infer({STATE_KEY: np.array([0.0, 0.0, 0.1, 0.0], np.float32)})
    assert c.actions.shape == (1, 3, 2) and c.dt == 0.05
    np.testing.assert_allclose(c.actions[0, :, 0], [1, 1, 0], atol=1e-6)


def test_errors_name_the_problem():
    p, src = make()
    bad = raw(0)
    del bad[CAM]
    with pytest.raises(ValueError, match="lacks 'observation.images.cam'"):
        src.infer(bad)
    bad = raw(0)
    bad[CAM] = bad[CAM].astype(np.float32)
    with pytest.raises(ValueError, match="expected uint8"):
        src.infer(bad)
    with pytest.raises(ValueError, match="'observation.state' has shape"):
        src.infer(raw(0, n_envs=3))
    with pytest.raises(ValueError, match="2 task strings for 2|got 1 task strings"):
        make()[1].infer(raw(0), task=["only one"])
    p, lang = make(use_language=True)
    with pytest.raises(ValueError, match="language-conditioned"):
        lang.infer(raw(0))
    with pytest.raises(TypeError, match="Policy"):
        PolicySource(torch.nn.Linear(2, 2))

    class Wrong(GoalPolicy):
        def act(self, obs, state):
            chunk, state = super().act(obs, state)
            return chunk[..., :1], state

    w = Wrong(feats=features())
    with pytest.raises(ValueError, match=r"returned actions of shape \(1, 4, 1\)"):
        PolicySource(w).infer({STATE_KEY: np.zeros(4, np.float32)})
