"""Paired tests: against independent formulas and statsmodels / scipy, and a simulation of the
clustered null hypothesis whose answer is known (type-I error 0.05)."""

import gc

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from cxr_augment.classify import bootstrap, stats


def test_image_level_mcnemar_matches_the_binomial_and_chi_square_formulas():
    y = np.array([1, 1, 1, 0, 0, 0, 1, 0, 1, 0] * 10)
    a = y.copy()
    b = y.copy()
    a[:7] = 1 - a[:7]  # a wrong on 7, b right there
    b[90:93] = 1 - b[90:93]  # b wrong on 3
    res = stats.mcnemar(y, a, b)
    assert (res["b"], res["c"]) == (3, 7)
    # exact: two-sided binomial test of 3 successes in 10 at p = 0.5
    assert res["exact"]
    assert res["p_value"] == pytest.approx(sps.binomtest(3, 10, 0.5).pvalue)
    big = stats.mcnemar(np.tile(y, 5), np.tile(a, 5), np.tile(b, 5))
    assert not big["exact"]
    chi2 = (abs(15 - 35) - 1) ** 2 / 50  # continuity-corrected statistic
    assert big["statistic"] == pytest.approx(chi2)
    assert big["p_value"] == pytest.approx(sps.chi2.sf(chi2, 1))


def test_clustered_mcnemar_with_one_image_per_patient_is_mcnemars_test():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 200)
    a = np.where(rng.random(200) < 0.8, y, 1 - y)
    b = np.where(rng.random(200) < 0.7, y, 1 - y)
    res = stats.mcnemar_clustered(y, a, b)
    ca, cb = a == y, b == y
    table = [[np.sum(ca & cb), np.sum(ca & ~cb)], [np.sum(~ca & cb), np.sum(~ca & ~cb)]]
    expected = sm_mcnemar(np.array(table), exact=False, correction=False)
    assert res["statistic"] == pytest.approx(expected.statistic)
    assert res["p_value"] == pytest.approx(expected.pvalue)


def test_clustered_mcnemar_follows_durkalski():
    # three patients; per patient (only A right) - (only B right)
    y = np.array([1, 1, 0, 0, 1, 0, 1])
    patient = np.array([0, 0, 0, 1, 1, 2, 2])
    a = np.array([1, 1, 0, 1, 1, 0, 0])  # right on 0,1,2,4,5
    b = np.array([0, 1, 1, 0, 0, 0, 1])  # right on 1,3,5,6
    # only A right: images 0, 2 (patient 0), 4 (patient 1); only B right: 3 (p1), 6 (p2)
    d = np.array([2, 0, -1])
    res = stats.mcnemar_clustered(y, a, b, patient)
    assert res["statistic"] == pytest.approx(d.sum() ** 2 / (d**2).sum())
    assert res["discordant_clusters"] == 2
    assert (res["b"], res["c"]) == (3, 2)
    none = stats.mcnemar_clustered(y, a, a, patient)
    assert np.isnan(none["p_value"]) and "discordant" in none["note"]


def _delong_direct(y, pa, pb):
    """O(m n) structural components of DeLong et al. (1988)."""
    pos, neg = y == 1, y == 0
    out = []
    for p in (pa, pb):
        x, w = p[pos], p[neg]
        psi = (x[:, None] > w[None, :]) + 0.5 * (x[:, None] == w[None, :])
        out.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (a1, v10a, v01a), (a2, v10b, v01b) = out
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    m, n = pos.sum(), neg.sum()
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    z = (a1 - a2) / np.sqrt(var)
    return a1, a2, z, 2 * sps.norm.sf(abs(z))


def _obuchowski_direct(y, scores, clusters):
    """Obuchowski (1997), eqs. for the clustered AUC covariance, written out with loops."""
    ids = np.unique(clusters)
    pos, neg = y == 1, y == 0
    m, n = pos.sum(), neg.sum()
    k = len(scores)
    v10, v01, theta = [], [], []
    for s in scores:
        x, w = s[pos], s[neg]
        psi = (x[:, None] > w[None, :]) + 0.5 * (x[:, None] == w[None, :])
        theta.append(psi.mean())
        a10, a01 = [], []
        for c in ids:
            a10.append(psi[clusters[pos] == c, :].sum() / n)  # V10 of cluster c
            a01.append(psi[:, clusters[neg] == c].sum() / m)  # V01 of cluster c
        v10.append(np.array(a10))
        v01.append(np.array(a01))
    mk = np.array([np.sum(pos & (clusters == c)) for c in ids])
    nk = np.array([np.sum(neg & (clusters == c)) for c in ids])
    i10, i01, i = np.sum(mk > 0), np.sum(nk > 0), len(ids)
    cov = np.zeros((k, k))
    for r in range(k):
        for s in range(k):
            s10 = (
                i10 / ((i10 - 1) * m) * np.sum((v10[r] - mk * theta[r]) * (v10[s] - mk * theta[s]))
            )
            s01 = (
                i01 / ((i01 - 1) * n) * np.sum((v01[r] - nk * theta[r]) * (v01[s] - nk * theta[s]))
            )
            s11 = i / (i - 1) * np.sum((v10[r] - mk * theta[r]) * (v01[s] - nk * theta[s]))
            s11t = i / (i - 1) * np.sum((v10[s] - mk * theta[s]) * (v01[r] - nk * theta[r]))
            cov[r, s] = s10 / m + s01 / n + (s11 + s11t) / (m * n)
    return np.array(theta), cov


def test_delong_with_one_image_per_patient_matches_the_direct_formula():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 150)
    pa = np.round(0.5 * y + rng.random(150), 2)  # ties included
    pb = 0.2 * y + rng.random(150)
    a1, a2, z, p = _delong_direct(y, pa, pb)
    for clusters in (None, np.arange(150)):
        res = stats.delong(y, pa, pb, clusters, reference="normal")
        assert res["auc_a"] == pytest.approx(a1)
        assert res["auc_b"] == pytest.approx(a2)
        assert res["z"] == pytest.approx(z)
        assert res["p_value"] == pytest.approx(p)
        # the default reads the same statistic against t (about 150 patients: df over 100)
        t_ref = stats.delong(y, pa, pb, clusters)
        assert t_ref["z"] == pytest.approx(z)
        assert t_ref["p_value"] > p and 100 < t_ref["df"] < 150


def test_delong_t_reference_uses_satterthwaite_degrees_of_freedom():
    rng = np.random.default_rng(12)
    clusters = np.repeat(np.arange(30), rng.integers(1, 4, 30))
    y = (rng.random(30) < 0.3).astype(int)[clusters]  # a label per patient
    pa, pb = y + rng.normal(0, 1, len(y)), y + rng.normal(0, 1.3, len(y))
    theta, cov = _obuchowski_direct(y, np.vstack([pa, pb]), clusters)
    # the covariance's parts, written out: per patient, placement sums less their expectation
    pos, neg = y == 1, y == 0
    m, n = pos.sum(), neg.sum()
    ids = np.unique(clusters)
    parts = []
    for group, other, size in ((pos, neg, m), (neg, pos, n)):
        r = []
        for s, th in zip((pa, pb), theta, strict=True):
            if group is pos:
                place = np.array([(s[other] < v).mean() + 0.5 * (s[other] == v).mean()
                                  for v in s[group]])  # fmt: skip
            else:
                place = np.array([(s[other] > v).mean() + 0.5 * (s[other] == v).mean()
                                  for v in s[group]])  # fmt: skip
            sums = np.array([place[clusters[group] == i].sum() for i in ids])
            counts = np.array([(clusters[group] == i).sum() for i in ids])
            r.append(sums - counts * th)
        d = r[0] - r[1]
        i_g = len(np.unique(clusters[group]))
        parts.append((i_g / ((i_g - 1) * size) * (d @ d) / size, i_g))
    (v10, i10), (v01, i01) = parts
    df = (v10 + v01) ** 2 / (v10**2 / (i10 - 1) + v01**2 / (i01 - 1))
    var = np.array([1, -1]) @ cov @ np.array([1, -1])
    z = (theta[0] - theta[1]) / np.sqrt(var)
    res = stats.delong(y, pa, pb, clusters)
    from scipy.stats import t

    assert res["df"] == pytest.approx(df, rel=1e-10)
    assert min(i10, i01) - 1 <= res["df"] <= i10 + i01 - 2  # Satterthwaite's bounds
    assert res["p_value"] == pytest.approx(2 * t.sf(abs(z), df), rel=1e-10)
    with pytest.raises(ValueError, match="reference"):
        stats.delong(y, pa, pb, clusters, reference="z")


def test_clustered_auc_covariance_matches_obuchowski_written_out():
    rng = np.random.default_rng(8)
    clusters = np.repeat(np.arange(40), rng.integers(1, 5, 40))
    y = (rng.random(len(clusters)) < 0.4).astype(int)
    scores = np.vstack([y + rng.normal(0, 1, len(y)), np.round(0.5 * y + rng.random(len(y)), 1)])
    aucs, cov = stats.auc_components(y, scores, clusters)
    theta, expected = _obuchowski_direct(y, scores, clusters)
    np.testing.assert_allclose(aucs, theta, rtol=1e-12)
    np.testing.assert_allclose(cov, expected, rtol=1e-10)


def test_delong_without_variance_is_undefined_not_p_one():
    y = np.array([0, 0, 0, 1, 1, 1])
    perfect = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    res = stats.delong(y, perfect, np.full(6, 0.5))
    assert (res["auc_a"], res["auc_b"]) == (1.0, 0.5)
    assert np.isnan(res["p_value"]) and "zero variance" in res["note"]
    few = stats.delong(np.array([0, 0, 1]), perfect[:3], perfect[:3])
    assert np.isnan(few["p_value"]) and "fewer than two" in few["note"]


def test_delong_of_seed_means_uses_the_joint_covariance():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 120)
    clusters = np.arange(120) // 3
    a = np.vstack([y + rng.normal(0, 1.2, 120) for _ in range(3)])
    b = np.vstack([y + rng.normal(0, 1.5, 120) for _ in range(2)])
    aucs, cov = stats.auc_components(y, np.vstack([a, b]), clusters)
    c = np.array([1 / 3] * 3 + [-1 / 2] * 2)
    res = stats.delong(y, a, b, clusters)
    assert res["auc_a"] == pytest.approx(aucs[:3].mean())
    assert res["z"] == pytest.approx((aucs[:3].mean() - aucs[3:].mean()) / np.sqrt(c @ cov @ c))


def test_holm_matches_the_step_down_rule():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.2])
    # sorted 0.01, 0.03, 0.04, 0.2 times 4, 3, 2, 1, made monotone
    expected = np.array([0.04, 0.09, np.nan, 0.09, 0.2])
    np.testing.assert_allclose(stats.holm(p), expected)


def test_holm_equals_statsmodels(monkeypatch):
    from statsmodels.stats.multitest import multipletests

    # its Holm branch collects garbage on every call (a third of a second here), which
    # changes nothing it returns
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rng = np.random.default_rng(11)
    for m in (1, 2, 3, 16, 40):
        for _ in range(20):
            p = rng.uniform(0, 1, m) ** rng.uniform(0.2, 4)
            p[rng.random(m) < 0.2] = p[0]  # ties
            expected = multipletests(p, method="holm")[1]
            np.testing.assert_array_equal(stats.holm(p), expected)
            with_nan = np.insert(p, m // 2, np.nan)
            out = stats.holm(with_nan)
            assert np.isnan(out[m // 2])
            np.testing.assert_array_equal(np.delete(out, m // 2), expected)
    assert stats.holm([]).shape == (0,) and np.isnan(stats.holm([np.nan])).all()


def simulate(rng, structure: str, patients: int = 200):
    """Two classifiers with equal AUCs on clustered images.

    Labels are shared within a patient (``three_images``) or within a study whose label every
    image carries (``official``: 1-2 studies per patient, 1-2 images per study); each
    classifier has its own patient effect on the score, so their errors cluster by patient.
    """
    if structure == "three_images":
        pid = np.repeat(np.arange(patients), 3)
        y = (rng.random(patients) < 0.3).astype(int)[pid]
    else:
        studies = rng.integers(1, 3, patients)
        sid = np.repeat(np.arange(studies.sum()), rng.integers(1, 3, studies.sum()))
        pid = np.repeat(np.arange(patients), studies)[sid]
        y = (rng.random(studies.sum()) < 0.3).astype(int)[sid]
    shared = rng.normal(0, 1, patients)[pid]
    sa = y + shared + rng.normal(0, 1, patients)[pid] + rng.normal(0, 0.5, len(y))
    sb = y + shared + rng.normal(0, 1, patients)[pid] + rng.normal(0, 0.5, len(y))
    return y, sa, sb, pid


@pytest.mark.parametrize("structure", ["three_images", "official"])
def test_clustered_tests_hold_their_level_where_image_level_tests_do_not(structure):
    rng = np.random.default_rng(2024)
    runs = 2000
    reject = {"delong": 0, "delong_images": 0, "mcnemar": 0, "mcnemar_images": 0}
    for _ in range(runs):
        y, sa, sb, pid = simulate(rng, structure)
        reject["delong"] += stats.delong(y, sa, sb, pid)["p_value"] < 0.05
        reject["delong_images"] += stats.delong(y, sa, sb)["p_value"] < 0.05
        da, db = sa >= 0.5, sb >= 0.5
        reject["mcnemar"] += stats.mcnemar_clustered(y, da, db, pid)["p_value"] < 0.05
        reject["mcnemar_images"] += stats.mcnemar(y, da, db)["p_value"] < 0.05
    rate = {k: v / runs for k, v in reject.items()}
    assert rate["delong"] <= 0.06 and rate["mcnemar"] <= 0.06, rate
    assert rate["delong"] >= 0.03 and rate["mcnemar"] >= 0.03, rate  # not merely conservative
    # the same data read image by image reject far too often: the simulation can tell
    assert rate["delong_images"] > 0.09 and rate["mcnemar_images"] > 0.08, rate


def test_delong_holds_its_level_with_few_positive_patients():
    # 30 patients with the official test's structure: about 20 positive images in about 10
    # patients, as the demo's validation split has; the normal reference is liberal there
    rng = np.random.default_rng(31)
    runs = 3000
    reject = {"t": 0, "normal": 0}
    for _ in range(runs):
        y, sa, sb, pid = simulate(rng, "official", patients=30)
        for ref in reject:
            reject[ref] += stats.delong(y, sa, sb, pid, reference=ref)["p_value"] < 0.05
    rate = {k: v / runs for k, v in reject.items()}
    assert 0.03 <= rate["t"] <= 0.055, rate
    assert rate["normal"] > 0.055, rate  # what the t reference corrects


def test_patient_bootstrap_of_differences_holds_its_level():
    # 300 runs keep the test short; 1,000 runs of 400 resamples gave 0.046-0.057 for the four
    rng = np.random.default_rng(11)
    runs, resamples = 300, 200
    reject = {"accuracy": 0, "f1": 0, "roc_auc": 0, "kappa": 0}
    p_values = {m: [] for m in reject}
    reject_images = 0
    for r in range(runs):
        y, sa, sb, pid = simulate(rng, "three_images")
        a = bootstrap.Evaluation(y, sa[None], pid, [0.5])
        b = bootstrap.Evaluation(y, sb[None], pid, [0.5])
        d = bootstrap.paired_difference(a, b, resamples=resamples, seed=r).set_index("metric")
        for m in reject:
            reject[m] += d.loc[m, "p_value"] < 0.05
            p_values[m].append(d.loc[m, "p_value"])
        ai = bootstrap.Evaluation(y, sa[None], np.arange(len(y)), [0.5])
        bi = bootstrap.Evaluation(y, sb[None], np.arange(len(y)), [0.5])
        di = bootstrap.paired_difference(ai, bi, ("roc_auc",), resamples, r)
        reject_images += di["p_value"].iloc[0] < 0.05
    # every p-value is a probability, never NaN: (1 + count) / (1 + resamples) keeps it in
    # [2 / 201, 1] with 200 resamples
    for m, p in p_values.items():
        p = np.asarray(p)
        assert np.all(np.isfinite(p)) and p.min() >= 2 / (resamples + 1) and p.max() <= 1, m
        # under the null p is about uniform (mean 0.5); the +1 rule and ties of the discrete
        # metrics make it a little conservative (0.50-0.54 here), never piled at 0 or 1
        assert 0.4 <= p.mean() <= 0.65, (m, p.mean())
    rate = {k: v / runs for k, v in reject.items()}
    # 300 runs at a true level of 0.05 give 15 +- 3.8 rejections: [0.02, 0.06] (6 to 18) is
    # -2.4 to +0.8 binomial SD, tight enough to fail for a test that never rejects (p = 1 or
    # NaN) while the upper bound stays the claim (this seed gives 0.030-0.047)
    assert all(0.02 <= v <= 0.06 for v in rate.values()), rate
    assert reject_images / runs > 0.12  # resampling images instead of patients: inflated
