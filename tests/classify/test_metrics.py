"""Every metric against scikit-learn; the threshold rule; patient bootstrap CIs."""

import numpy as np
import pytest
from sklearn import metrics as skm

from cxr_augment.classify import metrics

RNG = np.random.default_rng(0)
Y = RNG.integers(0, 2, 300)
P = np.clip(0.3 * Y + RNG.random(300) * 0.8, 0, 1)


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.77])
def test_point_metrics_match_scikit_learn(threshold):
    m = metrics.point_metrics(Y, P, threshold)
    pred = (P >= threshold).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(Y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(Y, pred, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(Y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(Y, pred))
    assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(Y, pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(Y, P))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(Y, P))
    tn, fp, fn, tp = skm.confusion_matrix(Y, pred).ravel()
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp)


def test_auc_with_ties_matches_scikit_learn():
    p = np.round(P, 1)
    assert metrics.roc_auc(Y, p) == pytest.approx(skm.roc_auc_score(Y, p))
    assert np.isnan(metrics.roc_auc(np.zeros(5), np.arange(5)))


def test_threshold_maximises_f1_on_the_given_set():
    t = metrics.choose_threshold(Y, P)
    best = max(skm.f1_score(Y, (P >= c).astype(int)) for c in np.unique(P))
    assert skm.f1_score(Y, (P >= t).astype(int)) == pytest.approx(best)


def _threshold_one_at_a_time(y, p):
    # the rule as stated, one point_metrics call per candidate
    best_t, best_f1 = 0.5, -1.0
    for t in np.unique(p):
        f1 = metrics.point_metrics(y, p, t)["f1"]
        if f1 > best_f1 + 1e-12:
            best_t, best_f1 = float(t), f1
    return best_t


def test_f1_at_every_threshold_is_point_metrics_f1_and_picks_the_same_threshold():
    rng = np.random.default_rng(4)
    for n, repeats in ((2, 10), (5, 10), (40, 6), (300, 2)):
        for _ in range(repeats):
            y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
            p = np.round(rng.random(n) * 0.7 + 0.3 * y, int(rng.integers(1, 4)))  # ties
            t = np.unique(p)
            f1 = metrics.f1_at_thresholds(y, p, t)
            expected = [metrics.point_metrics(y, p, c)["f1"] for c in t]
            np.testing.assert_array_equal(f1, expected)  # the same floats, bit for bit
            if y.sum():
                assert metrics.choose_threshold(y, p) == _threshold_one_at_a_time(y, p)
    assert metrics.choose_threshold(np.zeros(4), np.arange(4.0)) == 0.5
    with pytest.raises(ValueError, match="1 of 3 are NaN"):
        metrics.choose_threshold(np.array([0, 1, 1]), np.array([0.2, np.nan, 0.9]))
