import numpy as np
import pytest

from robopolicy.deploy.safety import EmergencyStop, SafetyConfig, SafetyLayer

LOW, HIGH = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])


def test_clips_to_the_robot_bounds_or_the_configured_ones():
    s = SafetyLayer(SafetyConfig(), LOW, HIGH)
    out, why = s.filter(np.array([2.0, -3.0, 0.5]))
    assert why is None and out.dtype == np.float32
    np.testing.assert_array_equal(out, [1.0, -1.0, 0.5])
    assert s.stats["clipped"] == 1
    s = SafetyLayer(SafetyConfig(action_low=[-0.2], action_high=[0.1, 0.2, 0.3]), LOW, HIGH)
    np.testing.assert_allclose(s.filter(np.array([1.0, 1.0, -1.0]))[0], [0.1, 0.2, -0.2])


def test_change_limit_ramps_each_dim():
    s = SafetyLayer(SafetyConfig(max_delta=[0.25, 0.5, 1.0]), LOW, HIGH)
    first, _ = s.filter(np.array([1.0, 1.0, 1.0]))  # nothing sent before: no limit
    np.testing.assert_array_equal(first, [1, 1, 1])
    seq = [s.filter(np.array([-1.0, -1.0, -1.0]))[0] for _ in range(4)]
    np.testing.assert_allclose(np.stack(seq)[:, 0], [0.75, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(np.stack(seq)[:, 1], [0.5, 0.0, -0.5, -1.0])
    np.testing.assert_allclose(np.stack(seq)[:, 2], [0.0, -1.0, -1.0, -1.0])
    assert s.stats["rate_limited"] == 4


def test_hold_stops_at_once_keeps_the_gripper_then_ramps_back():
    s = SafetyLayer(SafetyConfig(max_delta=[0.5]), LOW, HIGH, hold_keep_dims=(2,))
    s.filter(np.array([0.8, -0.8, 1.0]))
    held = s.hold("stale_obs")
    np.testing.assert_array_equal(held, [0.0, 0.0, 1.0])  # motion stops, the gripper keeps closing
    back, _ = s.filter(np.array([0.8, -0.8, 1.0]))
    np.testing.assert_allclose(back, [0.5, -0.5, 1.0])
    assert s.stats["hold:stale_obs"] == 1
    # A configured hold action (e.g. a position robot's home) is clipped to the bounds.
    s = SafetyLayer(SafetyConfig(hold_action=[5.0, 0.0, -0.3], hold_keep_dims=[]), LOW, HIGH, hold_keep_dims=(2,))
    s.filter(np.array([0.1, 0.1, 0.9]))
    np.testing.assert_allclose(s.hold("x"), [1.0, 0.0, -0.3])


def test_non_finite_actions_are_held():
    s = SafetyLayer(SafetyConfig(), LOW, HIGH)
    out, why = s.filter(np.array([np.nan, 0.0, 0.0]))
    assert why == "non_finite"
    np.testing.assert_array_equal(out, [0, 0, 0])
    assert s.stats["hold:non_finite"] == 1


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="max_delta has 2 values, expected 1 or 3"):
        SafetyLayer(SafetyConfig(max_delta=[0.1, 0.2]), LOW, HIGH)
    with pytest.raises(ValueError, match="action_low .* exceeds action_high"):
        SafetyLayer(SafetyConfig(action_low=[0.5], action_high=[0.1]), LOW, HIGH)
    with pytest.raises(ValueError, match="max_delta must be > 0"):
        SafetyLayer(SafetyConfig(max_delta=[0.0]), LOW, HIGH)
    with pytest.raises(ValueError, match="hold_keep_dims: 7 is not an action dim"):
        SafetyLayer(SafetyConfig(hold_keep_dims=[7]), LOW, HIGH)
    s = SafetyLayer(SafetyConfig(), LOW, HIGH)
    with pytest.raises(ValueError, match="2 values, the robot takes 3"):
        s.filter(np.zeros(2))


def test_emergency_stop_latches_and_watches_a_file(tmp_path):
    e = EmergencyStop()
    assert e.check() is None
    e.trigger("operator")
    e.trigger("second")
    assert e.check() == "operator"
    stop = tmp_path / "STOP"
    e = EmergencyStop(str(stop))
    assert e.check() is None
    stop.touch()
    assert "STOP" in e.check()
    stop.unlink()
    assert e.check() is not None  # latched
