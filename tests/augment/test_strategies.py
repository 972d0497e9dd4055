"""Strategy counts follow thesis Tables 4 and 5."""

import numpy as np
import pandas as pd
import pytest

from cxr_augment.augment import strategies


def _train(pos=163, neg=1425):
    return pd.DataFrame(
        {"key": [f"k{i}" for i in range(pos + neg)], "target": np.r_[np.ones(pos), np.zeros(neg)]}
    )


def test_unbalanced_is_table_4():
    train = _train()
    sel = strategies.select(train, "unbalanced", seed=1)
    table = strategies.counts_table(train, sel, "unbalanced").set_index("class")
    # every positive x 11; one third of the negatives x 1; all real images kept
    assert table.loc["Positive", "generated_images"] == 163 * 11
    assert table.loc["Negative", "generated_images"] == 1425 // 3
    assert table.loc["Negative", "real_images"] == 1425
    assert table.loc["Positive", "real_images"] == 163


def test_balanced_is_table_5():
    train = _train()
    sel = strategies.select(train, "balanced", seed=1)
    table = strategies.counts_table(train, sel, "balanced").set_index("class")
    assert table.loc["Positive", "generated_images"] == 163 * 4
    assert table.loc["Negative", "generated_images"] == 163 * 4
    assert table.loc["Negative", "real_images"] == 163  # the real set shrinks to the selection


def test_thesis_scale_reproduces_the_printed_tables():
    train = _train(18074, 160657)
    un = strategies.counts_table(train, strategies.select(train, "unbalanced", 0), "unbalanced")
    assert un.generated_images.tolist() == [53552, 198814]  # Table 4
    ba = strategies.counts_table(train, strategies.select(train, "balanced", 0), "balanced")
    assert ba.generated_images.tolist() == [72296, 72296]  # Table 5


def test_selection_is_seeded_and_custom_strategies_are_checked():
    train = _train()
    a = strategies.select(train, "unbalanced", seed=2)
    assert a.equals(strategies.select(train, "unbalanced", seed=2))
    assert not a.equals(strategies.select(train, "unbalanced", seed=3))
    custom = strategies.select(
        train, {"positive_copies": 2, "negatives_per_positive": 2, "negative_copies": 1}, seed=0
    )
    assert (custom.target == 0).sum() == 326
    with pytest.raises(ValueError, match="exactly one"):
        strategies.select(train, {"positive_copies": 1, "negative_copies": 1}, seed=0)


def _points(n_pos=20, n_neg=180, seed=0):
    """Points on a line: the boundary at 0, positives to the right, a few on the wrong side."""
    rng = np.random.default_rng(seed)
    target = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    distance = np.where(target == 1, 1.0, -1.0) * rng.uniform(0.1, 3.0, len(target))
    flip = rng.random(len(target)) < 0.15  # misclassified: on the other side of the line
    distance[:6] = 0.2 * np.arange(1, 7)  # six positives near the line (and two far) ...
    distance[6:8] = 2.9
    flip[:8] = True  # ... on its wrong side
    distance[flip] *= -1
    pred = (distance >= 0).astype(int)
    return pd.DataFrame(
        {"key": [f"k{i}" for i in range(len(target))], "target": target, "pred": pred,
         "distance": distance}
    )  # fmt: skip


def test_misclassified_selects_the_wrong_images_nearer_than_the_mean_and_balances():
    points = _points()
    sel, summary = strategies.misclassified_selection(points, {"balance": 1.0})
    mean = points.distance.abs().mean()
    want = points[(points.pred != points.target) & (points.distance.abs() < mean)]
    assert set(sel.key) == set(want.key) and summary["mean_distance"] == pytest.approx(mean)
    pos = sel[sel.target == 1]
    neg = sel[sel.target == 0]
    assert (neg.copies == 1).all() and pos.copies.nunique() == 1
    # positives after = 20 + copies x selected positives: the first count reaching the negatives
    n_neg_after = 180 + len(neg)
    c = int(pos.copies.iloc[0])
    assert 20 + c * len(pos) >= n_neg_after > 20 + (c - 1) * len(pos)
    assert summary["positives_after"] == 20 + c * len(pos)
    assert summary["negatives_after"] == n_neg_after
    assert summary["balance_after"] == pytest.approx((20 + c * len(pos)) / n_neg_after)


def test_misclassified_respects_the_copy_cap_and_a_lower_balance_target():
    points = _points()
    capped, s = strategies.misclassified_selection(points, {"max_copies": 3})
    assert capped[capped.target == 1].copies.max() == 3 and s["balance_after"] < 1
    half, s_half = strategies.misclassified_selection(
        points, {"balance": 0.5, "negative_copies": 0}
    )
    assert (half.target == 1).all()  # negatives with no copies are not selected
    assert s_half["positives_after"] >= 0.5 * 180
    with pytest.raises(ValueError, match="balance"):
        strategies.misclassified_selection(points, {"balance": 0})


def test_the_misclassified_strategy_takes_its_selection_from_outside():
    assert strategies.settings("misclassified")["real"] == "all"
    with pytest.raises(ValueError, match="misclassified_selection"):
        strategies.select(pd.DataFrame({"key": [], "target": []}), "misclassified", 1)
    with pytest.raises(ValueError, match="unknown augmentation strategy"):
        strategies.settings("lopsided")


def test_the_logistic_line_separates_the_models_decisions_in_the_plane():
    from sklearn.linear_model import LogisticRegression

    from cxr_augment.report.plots import logistic_line

    rng = np.random.default_rng(1)
    z = rng.normal(size=(400, 2))
    decisions = (z @ np.array([2.0, -1.0]) + 0.3 > 0).astype(int)
    w2, b2, dist = logistic_line(z, decisions)
    assert ((dist >= 0).astype(int) == decisions).mean() > 0.97
    # the distance is the Euclidean distance to the line (signed), as geometry says
    foot = z - dist[:, None] * (w2 / np.linalg.norm(w2))  # each point's foot on the line
    np.testing.assert_allclose(foot @ w2 + b2, 0, atol=1e-9)
    # the line's normal points the way the true rule's does
    ref = LogisticRegression(C=100.0, max_iter=1000).fit(z, decisions).coef_[0]
    assert np.dot(w2, ref) / np.linalg.norm(w2) / np.linalg.norm(ref) > 0.999
    with pytest.raises(ValueError, match="one decision"):
        logistic_line(z, np.zeros(400, int))
