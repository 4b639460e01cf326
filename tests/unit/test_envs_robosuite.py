"""robosuite suites: state layout, seeding, images, waypoint experts."""

from __future__ import annotations

import numpy as np
import pytest

from envs import IMAGE_PREFIX, STATE_KEY, make_suite
from envs.robosuite_suite import CAN_GOAL, PROPRIO_KEYS, TASKS, StateLayout


def run_expert(suite, env, task, seed, extra_steps=10):
    """Run the expert; return (success at any step, success at the end, steps to success)."""
    expert = suite.make_expert(task)
    obs, _ = env.reset(seed=seed)
    expert.reset()
    first = None
    for k in range(suite.max_episode_steps(task)):
        obs, _, terminated, _, info = env.step(expert.act(obs))
        assert not terminated
        if info["success"] and first is None:
            first = k + 1
        if first is not None and k + 1 >= first + extra_steps:
            break
    return first is not None, info["success"], first


@pytest.fixture(scope="module")
def lift():
    suite = make_suite("robosuite/lift")
    env = suite.make_env("lift")
    yield suite, env
    env.close()


def test_suite_fields():
    suite = make_suite("robosuite/lift")
    assert suite.tasks == ["lift"] and suite.fps == 20.0 and suite.cameras == []
    assert suite.instruction("lift") == "lift the red cube"
    assert make_suite("robosuite/stack", obs="image").cameras == ["agentview", "robot0_eye_in_hand"]
    assert StateLayout("lift").dim == 32 + 10 and StateLayout("stack").dim == 32 + 23
    with pytest.raises(ValueError, match="unknown robosuite suite"):
        make_suite("robosuite/door")


def test_state_is_the_named_robosuite_observations(lift):
    suite, env = lift
    obs, info = env.reset(seed=0)
    s = obs[STATE_KEY]
    assert s.dtype == np.float32 and s.shape == (42,) and len(env.state_names) == 42
    assert env.observation_space.contains(obs) and info["task"] == "lift the red cube"
    assert env.action_space.shape == (7,) and env.action_space.dtype == np.float32
    raw = env._raw
    for key, _ in [*PROPRIO_KEYS, *TASKS["lift"].object_keys]:
        np.testing.assert_allclose(env.layout.get(s, key), raw[key], atol=1e-6, err_msg=key)
    # the cube (half size 2 cm) starts on the table top (z=0.8), below Lift's success height 0.84
    assert 0.815 < env.layout.get(s, "cube_pos")[2] < 0.835
    assert info["success"] is False


def test_reset_determinism(lift):
    suite, env = lift
    seed = suite.trial_seed("lift", 2, "train")
    a = env.reset(seed=seed)[0][STATE_KEY]
    env.step(env.action_space.sample())
    np.testing.assert_array_equal(env.reset(seed=seed)[0][STATE_KEY], a)
    b = env.reset(seed=suite.trial_seed("lift", 2, "eval"))[0][STATE_KEY]
    cube = env.layout.slices["cube_pos"]
    assert np.abs(a[cube] - b[cube]).max() > 1e-4


def test_lift_expert(lift):
    suite, env = lift
    any_success, end_success, steps = run_expert(suite, env, "lift", suite.trial_seed("lift", 0, "eval"))
    assert any_success and end_success and steps < 100


def test_images_not_black():
    suite = make_suite("robosuite/lift", obs="image", image_size=64)
    env = suite.make_env("lift")
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(np.zeros(7, np.float32))
    for cam in suite.cameras:
        img = obs[IMAGE_PREFIX + cam]
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and img.std() > 0, cam
    # agentview looks at the table from the front: the table top fills the lower half
    agent = obs[IMAGE_PREFIX + "agentview"].astype(float)
    assert agent[40:].mean() > agent[:16].mean()
    env.close()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["stack", "pickplacecan"])
def test_place_experts(task):
    suite = make_suite(f"robosuite/{task}")
    env = suite.make_env(task)
    for trial in range(2):
        any_success, end_success, _ = run_expert(suite, env, task, suite.trial_seed(task, trial, "eval"))
        assert any_success and end_success, f"{task} expert failed on eval trial {trial}"
    env.close()


@pytest.mark.slow
def test_can_goal_is_inside_the_cans_bin():
    env = make_suite("robosuite/pickplacecan").make_env("pickplacecan")
    env.reset(seed=0)
    rs = env.unwrapped_robosuite
    can_id = rs.object_to_id["can"]
    assert not rs.not_in_bin(CAN_GOAL + [0, 0, 0.05], can_id)
    env.close()
