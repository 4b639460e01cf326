"""Meta-World v3 suites: task lists, seeding, observations, cameras, expert, step limit."""

from __future__ import annotations

import pickle

import mujoco
import numpy as np
import pytest

from envs import IMAGE_PREFIX, STATE_KEY, make_suite
from envs.metaworld_instructions import INSTRUCTIONS
from envs.metaworld_suite import STATE_NAMES, MetaWorldEnv
from envs.render import CameraRenderer

MT10 = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
        "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3"]


@pytest.fixture(scope="module")
def push():
    suite = make_suite("metaworld/mt1/push-v3")
    env = suite.make_env("push-v3")
    yield suite, env
    env.close()


def test_suites_and_instructions():
    mt1 = make_suite("metaworld/mt1/push-v3")
    assert mt1.name == "metaworld/mt1/push-v3" and mt1.tasks == ["push-v3"]
    assert mt1.fps == 80.0 and mt1.max_episode_steps("push-v3") == 500
    assert make_suite("metaworld/mt10").tasks == MT10
    mt50 = make_suite("metaworld/mt50")
    assert len(mt50.tasks) == 50 and set(mt50.tasks) == set(INSTRUCTIONS)
    sentences = [mt50.instruction(t) for t in mt50.tasks]
    assert len(set(sentences)) == 50 and all(s and s[0].islower() for s in sentences)
    assert mt1.instruction("push-v3") == "push the puck to the goal"
    with pytest.raises(ValueError, match="unknown Meta-World v3 task"):
        make_suite("metaworld/mt1/push-v2")
    with pytest.raises(ValueError, match="unknown Meta-World suite"):
        make_suite("metaworld/mt25")
    with pytest.raises(ValueError, match="unknown cameras"):
        make_suite("metaworld/mt10", obs="image", cameras=["agentview"])


def test_obs_and_spaces(push):
    suite, env = push
    obs, info = env.reset(seed=0)
    assert set(obs) == {STATE_KEY} and len(STATE_NAMES) == 39
    assert obs[STATE_KEY].dtype == np.float32 and obs[STATE_KEY].shape == (39,)
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (4,) and env.action_space.dtype == np.float32
    assert env.fps == suite.fps  # frame_skip x timestep of the real env
    assert info["task"] == env.task_description == "push the puck to the goal"
    # goal observable (MT setting): the last 3 entries are the goal the env will score against
    np.testing.assert_allclose(obs[STATE_KEY][-3:], env.unwrapped_metaworld._target_pos, atol=1e-6)
    np.testing.assert_allclose(obs[STATE_KEY][4:7], env.rand_vec[:3], atol=0.02)  # puck at its drawn spot


def test_reset_determinism_and_disjoint_splits(push):
    suite, env = push
    seed = suite.trial_seed("push-v3", 0, "train")
    a = env.reset(seed=seed)[0][STATE_KEY]
    vec_a = env.rand_vec
    env.step(env.action_space.sample())
    np.testing.assert_array_equal(env.reset(seed=seed)[0][STATE_KEY], a)
    np.testing.assert_array_equal(env.rand_vec, vec_a)
    train = {tuple(np.round(env.reset(seed=suite.trial_seed("push-v3", i, "train"))[0][STATE_KEY], 6))
             for i in range(5)}
    evals = {tuple(np.round(env.reset(seed=suite.trial_seed("push-v3", i, "eval"))[0][STATE_KEY], 6))
             for i in range(5)}
    assert len(train) == 5 and len(evals) == 5 and not train & evals
    # drawn inside the env's own randomization box
    space = env.unwrapped_metaworld._random_reset_space
    assert np.all(env.rand_vec >= space.low - 1e-9) and np.all(env.rand_vec <= space.high + 1e-9)


def test_expert_pushes_the_puck(push):
    suite, env = push
    expert = suite.make_expert("push-v3")
    for trial in range(2):
        obs, _ = env.reset(seed=suite.trial_seed("push-v3", trial, "eval"))
        expert.reset()
        successes = []
        for _ in range(150):
            obs, _, terminated, _, info = env.step(expert.act(obs))
            assert not terminated
            successes.append(info["success"])
        assert any(successes), f"push-v3 expert failed on eval trial {trial}"


def test_env_fn_pickles():
    suite = make_suite("metaworld/mt10")
    env = pickle.loads(pickle.dumps(suite.env_fn("reach-v3")))()
    obs, info = env.reset(seed=suite.trial_seed("reach-v3", 0, "eval"))
    assert obs[STATE_KEY].shape == (39,) and info["task"] == "reach the goal position"
    env.close()


def test_stepping_past_metaworld_limit_never_raises():
    env = MetaWorldEnv("reach-v3", max_episode_steps=500)
    env.reset(seed=0)
    zero = np.zeros(4, np.float32)
    truncs = [env.step(zero)[3] for _ in range(505)]
    assert not any(truncs[:499]) and all(truncs[499:])
    env.close()


def test_image_obs_and_camera_orientation():
    suite = make_suite("metaworld/mt1/push-v3", obs="image", image_size=64)
    assert suite.cameras == ["corner", "gripperPOV"]
    env = suite.make_env("push-v3")
    obs, _ = env.reset(seed=0)
    corner, wrist = obs[IMAGE_PREFIX + "corner"], obs[IMAGE_PREFIX + "gripperPOV"]
    assert corner.shape == wrist.shape == (64, 64, 3) and corner.dtype == np.uint8
    assert corner.std() > 0 and wrist.std() > 0
    assert env.observation_space.contains(obs)
    # "corner" is defined rolled by 180 degrees: the env must undo the roll.
    raw = CameraRenderer(env.unwrapped_metaworld.model, 64, 64)
    raw_corner = raw.render(env.unwrapped_metaworld.data, "corner")
    raw.close()
    np.testing.assert_array_equal(corner, raw_corner[::-1, ::-1])
    # ... so that world-up is image-up: project a point and the point 10 cm above it through the
    # camera (MuJoCo's camera frame: x right, y up, looking along -z), then apply the same roll.
    model, data = env.unwrapped_metaworld.model, env.unwrapped_metaworld.data
    cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "corner")
    f = 32 / np.tan(np.radians(model.cam_fovy[cam]) / 2)

    def pixel_row(p):
        c = data.cam_xmat[cam].reshape(3, 3).T @ (p - data.cam_xpos[cam])
        raw_row = 32 - f * c[1] / -c[2]
        return 64 - raw_row  # row after the 180 degree roll

    low = np.array([0.0, 0.6, 0.0])
    assert pixel_row(low + [0, 0, 0.1]) < pixel_row(low) - 3
    env.close()
