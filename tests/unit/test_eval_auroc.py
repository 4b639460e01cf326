"""robopolicy.eval.stats.auroc against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from robopolicy.eval.stats import auroc


def test_separation_and_chance():
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.8, 0.9, 0.1, 0.2], [0, 0, 1, 1]) == 0.0
    assert auroc([1.0, 1.0, 1.0, 1.0], [0, 1, 0, 1]) == 0.5


def test_hand_computed_pairs():
    # positives {0.35, 0.8} vs negatives {0.1, 0.4}: pairs won 1 + 0 + 1 + 1 of 4
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # three positives, two negatives: (0.3>0.2) (0.3<0.5) (0.6>both) (0.9>both) = 5 of 6
    assert auroc([0.2, 0.3, 0.5, 0.6, 0.9], [False, True, False, True, True]) == pytest.approx(5 / 6)


def test_ties_count_one_half():
    # positives {0.5, 0.9} vs negatives {0.5, 0.2}: 0.5 (tie) + 1 + 1 + 1 = 3.5 of 4
    assert auroc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == pytest.approx(0.875)
    # a three-way tie across classes: positive 2 ties two negatives (2 x 0.5), beats 1; positive 3
    # beats all three: (1 + 1 + 3) / 6
    assert auroc([1, 2, 2, 2, 3], [0, 0, 1, 0, 1]) == pytest.approx(5 / 6)


def test_order_and_numpy_inputs_do_not_matter():
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=40), rng.integers(0, 2, 40)
    perm = rng.permutation(40)
    assert auroc(s, y) == pytest.approx(auroc(s[perm].tolist(), y[perm].tolist()))
    # brute force over all pairs
    pos, neg = s[y == 1], s[y == 0]
    brute = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert auroc(s, y) == pytest.approx(brute)


def test_bad_input():
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="one length"):
        auroc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="finite"):
        auroc([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="0/1"):
        auroc([0.1, 0.2], [0, 2])
