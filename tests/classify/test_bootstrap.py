"""The vectorised patient bootstrap against the metrics computed on the resampled images."""

import numpy as np
import pytest
from sklearn import metrics as skm

from cxr_augment.classify import bootstrap, metrics

RNG = np.random.default_rng(0)
Y = RNG.integers(0, 2, 300)
P = np.round(np.clip(0.35 * Y + RNG.random(300) * 0.7, 0, 1), 2)  # ties included


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.71])
def test_weighted_metrics_equal_the_metrics_of_the_resampled_images(threshold):
    w = RNG.integers(0, 3, (6, 300)).astype(float)
    got = bootstrap.weighted_metrics(w, Y, P, threshold)
    for i in range(len(w)):
        idx = np.repeat(np.arange(300), w[i].astype(int))
        ref = metrics.point_metrics(Y[idx], P[idx], threshold)
        for k in metrics.METRICS:
            assert got[k][i] == pytest.approx(ref[k], abs=1e-12), k
        assert got["pr_auc"][i] == pytest.approx(skm.average_precision_score(Y[idx], P[idx]))
        assert got["roc_auc"][i] == pytest.approx(skm.roc_auc_score(Y[idx], P[idx]))


def test_best_thresholds_equal_the_stated_rule_on_the_resampled_images():
    w = RNG.integers(0, 3, (8, 300)).astype(float)
    got = bootstrap.best_thresholds(w, Y, P)
    for i in range(len(w)):
        idx = np.repeat(np.arange(300), w[i].astype(int))
        assert got[i] == metrics.choose_threshold(Y[idx], P[idx])
    assert np.isnan(bootstrap.best_thresholds(np.ones((1, 300)), np.zeros(300, int), P))[0]


def test_weight_blocks_resample_whole_patients():
    patients = np.repeat(np.arange(50), 4)
    blocks = list(bootstrap.weight_blocks(patients, 300, np.random.default_rng(1)))
    assert [len(b) for b in blocks] == [128, 128, 44]
    w = np.vstack(blocks)
    assert (w.sum(1) == 200).all()  # 50 patients drawn, 4 images each
    assert (w.reshape(300, 50, 4) == w.reshape(300, 50, 4)[:, :, :1]).all()


def test_resamples_without_a_positive_are_dropped_for_every_metric_and_counted():
    # 40 patients, 2 of them positive; the classifier finds both: recall 1
    patients = np.repeat(np.arange(40), 2)
    y = np.zeros(80, int)
    y[:4] = 1
    p = np.where(y == 1, 0.9, RNG.random(80) * 0.5)
    ev = bootstrap.Evaluation(y, p[None], patients, [0.6])
    table = bootstrap.metric_cis(ev, resamples=500, seed=3).set_index("metric")
    assert table.loc["recall", "value"] == 1.0
    assert (table.loc["recall", "ci_low"], table.loc["recall", "ci_high"]) == (1.0, 1.0)
    # the draws without a positive patient, counted independently
    rng = np.random.default_rng(3)
    empty = sum(
        int(((w[:, y == 1]).sum(1) == 0).sum()) for w in bootstrap.weight_blocks(patients, 500, rng)
    )
    assert empty > 0
    assert (table["resamples_used"] == 500 - empty).all()
    assert (table["resamples"] == 500).all()


def test_several_seeds_give_the_mean_of_their_metrics():
    patients = np.arange(300) // 3
    probs = np.vstack([P, np.clip(P + RNG.normal(0, 0.1, 300), 0, 1)])
    ev = bootstrap.Evaluation(Y, probs, patients, [0.5, 0.4])
    est = bootstrap.point(ev)
    for k in ("f1", "roc_auc", "kappa"):
        per = [metrics.point_metrics(Y, probs[s], t)[k] for s, t in enumerate((0.5, 0.4))]
        assert est[k] == pytest.approx(np.mean(per))
    mean, lo, hi = bootstrap.seed_interval([0.6, 0.7, 0.8])
    assert mean == pytest.approx(0.7)
    assert hi - mean == pytest.approx(4.302652729911275 * 0.1 / np.sqrt(3))  # t(0.975, 2)
    assert np.isnan(bootstrap.seed_interval([0.6])[1])


def test_a_resampled_threshold_carries_its_uncertainty_into_the_interval():
    # 8 validation positives choose the threshold; 120 test positives measure recall
    rng = np.random.default_rng(9)
    vy = np.zeros(200, int)
    vy[:8] = 1
    ty = (rng.random(600) < 0.2).astype(int)
    vp = np.clip(0.3 * vy + rng.random(200) * 0.8, 0, 1)
    tp = np.clip(0.3 * ty + rng.random(600) * 0.8, 0, 1)
    thr = metrics.choose_threshold(vy, vp)
    ev = bootstrap.Evaluation(
        ty, tp[None], np.arange(600) // 2, [thr], vy, vp[None], np.arange(200) // 2
    )
    fixed = bootstrap.metric_cis(ev, 1000, 1, "fixed").set_index("metric")
    moving = bootstrap.metric_cis(ev, 1000, 1, "resampled").set_index("metric")
    width = lambda t, m: t.loc[m, "ci_high"] - t.loc[m, "ci_low"]  # noqa: E731
    assert width(moving, "recall") > 2 * width(fixed, "recall")
    # the AUC does not depend on the threshold
    assert moving.loc["roc_auc", "ci_low"] == pytest.approx(
        fixed.loc["roc_auc", "ci_low"], abs=0.01
    )
    assert fixed.equals(bootstrap.metric_cis(ev, 1000, 1, "fixed").set_index("metric"))


def test_patient_resampling_widens_the_interval_when_a_patients_images_agree():
    patients = np.repeat(np.arange(100), 3)
    y = np.repeat(RNG.integers(0, 2, 100), 3)
    p = np.clip(0.4 * y + np.repeat(RNG.random(100), 3) * 0.7, 0, 1)
    by_patient = bootstrap.metric_cis(bootstrap.Evaluation(y, p[None], patients, [0.5]), 500, 2)
    by_image = bootstrap.metric_cis(bootstrap.Evaluation(y, p[None], np.arange(300), [0.5]), 500, 2)
    width = lambda t: (t.ci_high - t.ci_low)[t.metric == "roc_auc"].iloc[0]  # noqa: E731
    assert width(by_patient) > 1.3 * width(by_image)
