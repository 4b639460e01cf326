"""PushBlock suite, and the suite machinery every family shares (seeds, names, pickling)."""

from __future__ import annotations

import gc
import pickle
import warnings

import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import SyncVectorEnv

from envs import IMAGE_PREFIX, STATE_KEY, list_suites, make_suite, trial_seed
from envs import pushblock as pb


@pytest.fixture(scope="module")
def suite():
    return make_suite("pushblock")


@pytest.fixture
def env(suite):
    e = suite.make_env("pushblock")
    yield e
    e.close()


def run_expert(env, expert, seed, steps=None):
    obs, info = env.reset(seed=seed)
    expert.reset()
    success_any = False
    for _ in range(steps or env.max_episode_steps):
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        assert not terminated
        success_any |= info["success"]
        if truncated:
            break
    return success_any, info


def test_suite_fields(suite):
    assert suite.name == "pushblock" and suite.tasks == ["pushblock"]
    assert suite.fps == 10.0 and suite.cameras == []
    assert suite.instruction("pushblock") == "push the red block onto the green target"
    assert suite.max_episode_steps("pushblock") == 150
    image = make_suite("pushblock", obs="image")
    assert image.cameras == ["top"]


def test_trial_seeds_fixed_and_disjoint(suite):
    # Regression values: changing the seed layout would silently change every benchmark.
    assert trial_seed("pushblock", 0, "train") == 1865482240
    assert trial_seed("pushblock", 5, "eval") == 4012965893
    assert trial_seed("push-v3", 0, "train") == 1006698496
    train = [suite.trial_seed("pushblock", i, "train") for i in range(200)]
    evals = [suite.trial_seed("pushblock", i, "eval") for i in range(200)]
    assert len(set(train)) == 200 and not set(train) & set(evals)
    assert max(train) < 2**31 <= min(evals) and max(evals) < 2**32
    assert suite.trial_seed("pushblock", 7, "eval") == suite.trial_seed("pushblock", 7, "eval")
    with pytest.raises(ValueError, match="split"):
        suite.trial_seed("pushblock", 0, "test")
    with pytest.raises(ValueError, match="trial"):
        suite.trial_seed("pushblock", -1, "train")
    with pytest.raises(ValueError, match="no task"):
        suite.trial_seed("push-v3", 0, "train")


def test_obs_layout_and_spaces(env):
    obs, info = env.reset(seed=0)
    assert set(obs) == {STATE_KEY}
    s = obs[STATE_KEY]
    assert s.dtype == np.float32 and s.shape == (len(pb.STATE_NAMES),) == (10,)
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (2,) and env.action_space.dtype == np.float32
    assert info["task"] == env.task_description == "push the red block onto the green target"
    assert info["success"] is False
    # the state holds what the simulator holds
    q = env.data.qpos
    np.testing.assert_allclose(s[0:4], q[:4], atol=1e-6)                      # pusher, block xy
    np.testing.assert_allclose(s[4:6], [np.cos(4 * q[4]), np.sin(4 * q[4])], atol=1e-6)
    np.testing.assert_allclose(s[6:8], env.data.mocap_pos[0, :2], atol=1e-6)
    np.testing.assert_allclose(s[8:10], 0.0)
    # initial-state distribution constraints
    assert np.linalg.norm(s[6:8] - s[2:4]) >= pb.MIN_BLOCK_TARGET
    assert np.linalg.norm(s[0:2] - s[2:4]) >= pb.MIN_PUSHER_BLOCK


@pytest.mark.parametrize("obs", ["state", "image"])
def test_passes_gymnasium_env_checker(obs):
    env = make_suite("pushblock", obs=obs, image_size=32).make_env("pushblock")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded state box, no registry spec: both intended
        check_env(env)
    env.close()


def test_reset_determinism(env, suite):
    seed = suite.trial_seed("pushblock", 3, "train")
    a = env.reset(seed=seed)[0][STATE_KEY]
    env.step(np.ones(2, np.float32))
    b = env.reset(seed=seed)[0][STATE_KEY]
    np.testing.assert_array_equal(a, b)
    other = env.reset(seed=suite.trial_seed("pushblock", 3, "eval"))[0][STATE_KEY]
    assert np.abs(other - a).max() > 1e-3
    # a fresh env gives the same initial state for the same seed
    fresh = suite.make_env("pushblock")
    np.testing.assert_array_equal(fresh.reset(seed=seed)[0][STATE_KEY], a)
    fresh.close()


def test_action_moves_pusher_at_max_speed(env):
    obs, _ = env.reset(seed=1)
    start = obs[STATE_KEY][:2].copy()
    action = np.array([1.0, 0.0], np.float32) if start[0] < 0 else np.array([-1.0, 0.0], np.float32)
    for _ in range(3):
        obs, *_ = env.step(action)
    moved = obs[STATE_KEY][0] - start[0]
    # 3 steps of 0.1 s at MAX_SPEED, minus the velocity servo's spin-up
    assert 0.8 * 0.3 * pb.MAX_SPEED < abs(moved) <= 0.3 * pb.MAX_SPEED + 1e-3
    assert np.sign(moved) == np.sign(action[0])
    assert abs(obs[STATE_KEY][8]) == pytest.approx(pb.MAX_SPEED, rel=0.1)


def test_bad_actions_raise(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.array([np.nan, 0.0]))


def test_success_flag_follows_block_position(env):
    env.reset(seed=0)
    target = env.data.mocap_pos[0, :2].copy()
    env.data.qpos[2:4] = target + [0.01, 0.0]
    mujoco.mj_forward(env.model, env.data)
    *_, info = env.step(np.zeros(2, np.float32))
    assert info["success"] is True and info["is_success"] is True
    env.data.qpos[2:4] = target + [pb.SUCCESS_RADIUS + 0.02, 0.0]
    mujoco.mj_forward(env.model, env.data)
    *_, info = env.step(np.zeros(2, np.float32))
    assert info["success"] is False


def test_truncation_and_stepping_past_it(env):
    env.reset(seed=0)
    flags = [env.step(np.zeros(2, np.float32))[3] for _ in range(env.max_episode_steps + 5)]
    assert not any(flags[:149]) and all(flags[149:])


def test_expert_succeeds(env, suite):
    expert = suite.make_expert("pushblock")
    for trial in range(4):
        success, info = run_expert(env, expert, suite.trial_seed("pushblock", trial, "eval"))
        assert success and info["success"], f"expert failed on eval trial {trial}"


def test_image_obs_upright_and_not_black():
    suite = make_suite("pushblock", obs="image", image_size=84, cameras=["top", "front"])
    env = suite.make_env("pushblock")
    obs, _ = env.reset(seed=5)
    top = obs[IMAGE_PREFIX + "top"]
    assert top.dtype == np.uint8 and top.shape == (84, 84, 3)
    assert obs[IMAGE_PREFIX + "front"].shape == (84, 84, 3)
    assert top.std() > 0 and env.observation_space.contains(obs)
    # The red block must appear where the top-down pinhole camera puts it (x right, y up).
    red = (top[..., 0] > 150) & (top[..., 1] < 90) & (top[..., 2] < 90)
    rows, cols = np.nonzero(red)
    assert rows.size > 5
    bx, by = obs[STATE_KEY][2:4]
    half_width = (0.95 - 0.06) * np.tan(np.radians(39 / 2))  # camera height minus block top
    expect_col = 42 * (1 + bx / half_width)
    expect_row = 42 * (1 - by / half_width)
    assert abs(cols.mean() - expect_col) < 3 and abs(rows.mean() - expect_row) < 3
    frame = env.render()
    assert frame.shape == (256, 256, 3) and frame.std() > 0
    env.close()


def test_closed_env_does_not_blacken_a_new_one():
    suite = make_suite("pushblock", obs="image")
    first = suite.make_env("pushblock")
    first.reset(seed=0)
    first.close()
    second = suite.make_env("pushblock")
    del first
    gc.collect()
    obs, _ = second.reset(seed=0)
    obs, *_ = second.step(np.zeros(2, np.float32))
    assert obs[IMAGE_PREFIX + "top"].std() > 0
    second.close()


def test_env_fn_pickles_and_vectorizes(suite):
    fn = pickle.loads(pickle.dumps(suite.env_fn("pushblock")))
    venv = SyncVectorEnv([fn, suite.env_fn("pushblock")])
    seeds = [suite.trial_seed("pushblock", i, "eval") for i in range(2)]
    obs, info = venv.reset(seed=seeds)
    assert obs[STATE_KEY].shape == (2, 10)
    single = suite.make_env("pushblock")
    np.testing.assert_array_equal(obs[STATE_KEY][1], single.reset(seed=seeds[1])[0][STATE_KEY])
    venv.close()
    single.close()


def test_make_suite_errors_and_names():
    names = list_suites()
    assert {"pushblock", "metaworld/mt1/push-v3", "metaworld/mt10", "metaworld/mt50",
            "robosuite/lift", "robosuite/stack", "robosuite/pickplacecan"} <= set(names)
    assert sum(n.startswith("metaworld/mt1/") for n in names) == 50
    with pytest.raises(ValueError, match="unknown suite"):
        make_suite("libero/spatial")
    with pytest.raises(ValueError, match="obs"):
        make_suite("pushblock", obs="depth")
    with pytest.raises(ValueError, match="image_size"):
        make_suite("pushblock", image_size=0)
    with pytest.raises(ValueError, match="unknown cameras"):
        make_suite("pushblock", obs="image", cameras=["side"])
    with pytest.raises(ValueError, match="no task"):
        make_suite("pushblock").make_env("push-v3")
