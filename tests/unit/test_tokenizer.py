import numpy as np
import pytest
import torch

from robopolicy.tokenizers import ActionTokenizer, TokenizerConfig, action_stats

A = 3
STATS = {
    "action": {
        "min": np.array([-3.0, 0.0, 1.0]),
        "max": np.array([3.0, 2.0, 1.0]),
        "mean": np.zeros(3),
        "std": np.ones(3),
        "q01": np.array([-2.0, 0.5, 1.0]),  # last dimension constant
        "q99": np.array([2.0, 1.5, 1.0]),
    }
}


def discrete(n_bins=256, **kw):
    return ActionTokenizer(TokenizerConfig(kind="discrete", n_bins=n_bins, **kw), horizon=4, action_dim=A, stats=STATS)


def test_continuous_round_trip_is_exact():
    tok = ActionTokenizer(TokenizerConfig(), horizon=4, action_dim=A, stats=STATS)
    x = torch.randn(2, 4, A)
    enc = tok.encode(x)
    assert enc.shape == (2, 4, A) and enc.dtype == torch.float32
    assert torch.allclose(tok.encode(torch.tensor([[[3.0, 2.0, 1.0]]])), torch.tensor([[[1.0, 1.0, 0.0]]]))
    assert torch.allclose(tok.decode(enc), x, atol=1e-5)
    assert tok.vocab_size is None


def test_discrete_round_trip_within_half_bin_inside_quantiles():
    tok = discrete(n_bins=64)
    low, high = torch.tensor([-2.0, 0.5, 1.0]), torch.tensor([2.0, 1.5, 1.0])
    x = low + (high - low) * torch.rand(8, 4, A)
    tokens = tok.encode(x)
    assert tokens.shape == (8, 4 * A) and tokens.dtype == torch.long
    assert tokens.min() >= 0 and tokens.max() < 64
    err = (tok.decode(tokens) - x).abs()
    half_bin = (high - low).clamp_min(1e-6) / 64 / 2
    assert (err <= half_bin + 1e-6).all()
    assert err[..., 0].max() > half_bin[0] / 4  # not trivially exact: the bound is the real one
    # time-major layout: token index h*A + a
    assert tokens[0, 1 * A + 2] == tok.encode(x[:1, 1:2, 2:3].expand(1, 1, A).clone())[0, 2]


def test_discrete_clips_outside_range_to_end_bins():
    tok = discrete()
    t = tok.encode(torch.tensor([[[-10.0, 10.0, 1.0]]]))
    assert t[0, 0] == 0 and t[0, 1] == 255
    dec = tok.decode(t)[0, 0]
    assert abs(dec[0] - (-2.0)) < 4 / 256 and abs(dec[1] - 1.5) < 1 / 256


def test_two_hot_expectation_recovers_values():
    tok = discrete(n_bins=32)
    centers = tok.bin_centers()
    lo, hi = centers[:, 0], centers[:, -1]
    x = lo + (hi - lo) * torch.rand(5, 4, A)
    th = tok.two_hot(x)
    assert th.shape == (5, 4 * A, 32)
    assert torch.allclose(th.sum(-1), torch.ones(5, 4 * A))
    assert ((th > 0).sum(-1) <= 2).all()
    assert torch.allclose(tok.expectation(th), x, atol=1e-5)
    # a one-hot distribution decodes to that bin's center, like decode()
    tokens = tok.encode(x)
    onehot = torch.nn.functional.one_hot(tokens, 32).float()
    assert torch.allclose(tok.expectation(onehot), tok.decode(tokens), atol=1e-6)


def test_fit_from_actions_matches_fit_from_stats():
    actions = torch.randn(500, 4, A)
    a = ActionTokenizer(TokenizerConfig(kind="discrete"), 4, A)
    a.fit(actions)
    s = action_stats(actions)
    b = ActionTokenizer(TokenizerConfig(kind="discrete"), 4, A, stats={"action": s})
    assert torch.allclose(a.low, b.low) and torch.allclose(a.width, b.width)
    assert torch.allclose(a.low, torch.quantile(actions.reshape(-1, A), 0.01, dim=0), atol=1e-5)


def test_state_dict_round_trip_and_unfitted_refuses():
    tok = discrete()
    fresh = ActionTokenizer(TokenizerConfig(kind="discrete"), 4, A)
    x = torch.randn(2, 4, A)
    with pytest.raises(ValueError, match="not fitted"):
        fresh.encode(x)
    fresh.load_state_dict(tok.state_dict())
    assert torch.equal(fresh.encode(x), tok.encode(x))
    cont = ActionTokenizer(TokenizerConfig(), 4, A)
    with pytest.raises(ValueError, match="no statistics"):
        cont.encode(x)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="bin_range='min_max'"):
        ActionTokenizer(TokenizerConfig(kind="discrete"), 4, A, stats={"action": {"min": [0] * 3, "max": [1] * 3}})
    tok = ActionTokenizer(TokenizerConfig(kind="discrete", bin_range="min_max"), 4, A, stats={"action": {"min": [0] * 3, "max": [1] * 3}})
    assert torch.allclose(tok.width, torch.full((A,), 1 / 256))
    with pytest.raises(ValueError, match="width 2"):
        tok.encode(torch.zeros(1, 4, 2))
    with pytest.raises(ValueError, match="kind"):
        ActionTokenizer(TokenizerConfig(kind="bins"), 4, A)
    with pytest.raises(ValueError, match="continuous"):
        ActionTokenizer(TokenizerConfig(), 4, A, stats=STATS).two_hot(torch.zeros(1, 4, A))
