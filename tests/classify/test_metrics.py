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
