import numpy as np
import pytest

from robopolicy.history import ObsHistory


def frame(v, n_envs=2):
    """A batched observation whose values encode ``v`` (per env: v + 10 * env)."""
    env = np.arange(n_envs, dtype=np.float32)[:, None]
    return {"s": np.full((n_envs, 3), v, np.float32) + 10 * env,
            "img": np.full((n_envs, 2, 2, 3), v, np.uint8)}


def test_reset_pads_with_first_frame_then_shifts():
    h = ObsHistory(3)
    h.reset(frame(1))
    st = h.stacked()
    assert st["s"].shape == (2, 3, 3) and st["img"].shape == (2, 3, 2, 2, 3)
    np.testing.assert_array_equal(st["s"][:, :, 0], [[1, 1, 1], [11, 11, 11]])
    h.push(frame(2))
    np.testing.assert_array_equal(h.stacked()["s"][:, :, 0], [[1, 1, 2], [11, 11, 12]])
    h.push(frame(3))
    h.push(frame(4))
    np.testing.assert_array_equal(h.stacked()["s"][:, :, 0], [[2, 3, 4], [12, 13, 14]])
    np.testing.assert_array_equal(h.stacked()["img"][0, :, 0, 0, 0], [2, 3, 4])


def test_unbatched_and_first_push_starts_episode():
    h = ObsHistory(2, batched=False)
    h.push({"s": np.array([1.0, 2.0])})  # no reset: the first push starts the episode
    np.testing.assert_array_equal(h.stacked()["s"], [[1, 2], [1, 2]])
    h.push({"s": np.array([3.0, 4.0])})
    np.testing.assert_array_equal(h.stacked()["s"], [[1, 2], [3, 4]])
    h.reset()
    assert h.empty
    h.push({"s": np.array([5.0, 6.0])})
    np.testing.assert_array_equal(h.stacked()["s"], [[5, 6], [5, 6]])


def test_per_env_reset_only_restarts_those_envs():
    h = ObsHistory(3)
    h.reset(frame(1))
    h.push(frame(2))
    h.reset(env_ids=[1])          # env 1 restarts from its next frame
    h.push(frame(3))
    np.testing.assert_array_equal(h.stacked()["s"][:, :, 0], [[1, 2, 3], [13, 13, 13]])
    h.push(frame(4))
    np.testing.assert_array_equal(h.stacked()["s"][:, :, 0], [[2, 3, 4], [13, 13, 14]])
    h.reset(frame(7), env_ids=[0])  # restart env 0 from a given full-batch obs
    np.testing.assert_array_equal(h.stacked()["s"][:, :, 0], [[7, 7, 7], [13, 13, 14]])


def test_stacked_is_a_copy_and_push_copies_input():
    h = ObsHistory(2)
    f = frame(1)
    h.reset(f)
    f["s"][:] = 99  # mutating the env's buffer must not change the history
    st = h.stacked()
    st["s"][:] = -1
    np.testing.assert_array_equal(h.stacked()["s"][:, :, 0], [[1, 1], [11, 11]])


def test_bad_input_errors():
    h = ObsHistory(2)
    with pytest.raises(RuntimeError, match="no observation"):
        h.stacked()
    h.reset(frame(1))
    with pytest.raises(ValueError, match="keys"):
        h.push({"s": np.zeros((2, 3), np.float32)})
    with pytest.raises(ValueError, match="'s' has frame shape"):
        h.push({"s": np.zeros((2, 4), np.float32), "img": np.zeros((2, 2, 2, 3), np.uint8)})
    with pytest.raises(ValueError, match="expected np.ndarray"):
        h.push({"s": [1, 2, 3], "img": np.zeros((2, 2, 2, 3), np.uint8)})
    with pytest.raises(ValueError, match="disagree on the env dim"):
        ObsHistory(2).push({"a": np.zeros((2, 1)), "b": np.zeros((3, 1))})
    with pytest.raises(ValueError, match="out of range"):
        h.reset(env_ids=[5])
    with pytest.raises(ValueError, match="batched"):
        ObsHistory(2, batched=False).reset(env_ids=[0])
    with pytest.raises(ValueError, match="n_obs_steps"):
        ObsHistory(0)
