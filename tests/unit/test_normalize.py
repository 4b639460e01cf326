import numpy as np
import pytest
import torch

from robopolicy.normalize import FeatureNormalizer, Normalizer, NormalizerConfig
from robopolicy.types import FeatureSpec

STATS = {
    "observation.state": {
        "min": np.array([-2.0, 0.0, 5.0]),
        "max": np.array([2.0, 10.0, 5.0]),  # last dimension constant
        "mean": np.array([0.5, 4.0, 5.0]),
        "std": np.array([2.0, 0.5, 0.0]),
    },
    "observation.images.cam": {
        "mean": np.full((3, 1, 1), 0.5),
        "std": np.full((3, 1, 1), 0.25),
        "min": np.zeros((3, 1, 1)),
        "max": np.ones((3, 1, 1)),
    },
}


def test_min_max_maps_range_to_unit_interval_and_round_trips():
    n = FeatureNormalizer("observation.state", "min_max", (3,), STATS)
    y = n.normalize(torch.tensor([[-2.0, 0.0, 5.0], [2.0, 10.0, 5.0], [0.0, 5.0, 5.0]]))
    assert torch.allclose(y, torch.tensor([[-1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    x = torch.randn(4, 2, 3) * 5
    assert torch.allclose(n.unnormalize(n.normalize(x)), x, atol=1e-5)


def test_mean_std_guards_zero_std():
    n = FeatureNormalizer("observation.state", "mean_std", (3,), STATS)
    y = n.normalize(torch.tensor([2.5, 4.5, 5.0]))
    assert torch.allclose(y, torch.tensor([1.0, 1.0, 0.0]))
    assert torch.isfinite(n.normalize(torch.tensor([0.0, 0.0, 7.0]))).all()


def test_observation_normalizer_defaults_and_image_mean_std():
    spec = FeatureSpec(action_dim=2, state_dim=3, cameras={"cam": (3, 8, 8)})
    norm = Normalizer.for_observations(spec, NormalizerConfig(), STATS)
    img = torch.rand(2, 1, 3, 8, 8)
    obs = {"observation.state": torch.tensor([[[2.0, 10.0, 5.0]]]), "observation.images.cam": img, "task": ["x"]}
    out = norm.normalize_obs(obs)
    assert torch.allclose(out["observation.state"], torch.tensor([[[1.0, 1.0, 0.0]]]))
    assert out["observation.images.cam"] is img and out["task"] == ["x"]  # images identity by default
    assert obs["observation.state"][0, 0, 0] == 2.0  # input left untouched
    norm2 = Normalizer.for_observations(spec, NormalizerConfig(images="mean_std"), STATS)
    assert torch.allclose(norm2.normalize("observation.images.cam", img), (img - 0.5) / 0.25, atol=1e-6)


def test_state_dict_round_trip_and_unloaded_normalizer_refuses():
    spec = FeatureSpec(action_dim=2, state_dim=3)
    fitted = Normalizer.for_observations(spec, NormalizerConfig(), STATS)
    empty = Normalizer.for_observations(spec, NormalizerConfig(), None)
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="no statistics"):
        empty.normalize("observation.state", x)
    empty.load_state_dict(fitted.state_dict())
    assert torch.equal(empty.normalize("observation.state", x), fitted.normalize("observation.state", x))


def test_bad_stats_give_clear_errors():
    with pytest.raises(ValueError, match="no entry for feature 'observation.state'"):
        FeatureNormalizer("observation.state", "min_max", (3,), {"action": {}})
    with pytest.raises(ValueError, match="no 'max'"):
        FeatureNormalizer("observation.state", "min_max", (3,), {"observation.state": {"min": [0, 0, 0]}})
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(3,\)"):
        FeatureNormalizer("observation.state", "min_max", (3,), {"observation.state": {"min": [0, 0], "max": [1, 1]}})
    with pytest.raises(ValueError, match="non-finite"):
        FeatureNormalizer("observation.state", "min_max", (1,), {"observation.state": {"min": [np.nan], "max": [1]}})
    with pytest.raises(ValueError, match="mode"):
        FeatureNormalizer("observation.state", "minmax", (3,), STATS)
