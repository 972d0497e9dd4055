"""McNemar against statsmodels, DeLong against a direct computation."""

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from cxr_augment import stats


def test_mcnemar_counts_discordant_decisions_and_matches_statsmodels():
    y = np.array([1, 1, 1, 0, 0, 0, 1, 0, 1, 0] * 10)
    a = y.copy()
    b = y.copy()
    a[:7] = 1 - a[:7]  # a wrong on 7, b right there
    b[90:93] = 1 - b[90:93]  # b wrong on 3
    res = stats.mcnemar(y, a, b)
    assert (res["b"], res["c"]) == (3, 7)
    table = np.array([[90, 3], [7, 0]])
    expected = sm_mcnemar(table, exact=True)
    assert res["p_value"] == pytest.approx(expected.pvalue)
    big_a = np.tile(a, 5)
    big = stats.mcnemar(np.tile(y, 5), big_a, np.tile(b, 5))
    assert not big["exact"]
    assert big["p_value"] == pytest.approx(
        sm_mcnemar(table * 5, exact=False, correction=True).pvalue
    )


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


def test_delong_matches_the_direct_formula():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 150)
    pa = np.round(0.5 * y + rng.random(150), 2)  # ties included
    pb = 0.2 * y + rng.random(150)
    res = stats.delong(y, pa, pb)
    a1, a2, z, p = _delong_direct(y, pa, pb)
    assert res["auc_a"] == pytest.approx(a1)
    assert res["auc_b"] == pytest.approx(a2)
    assert res["z"] == pytest.approx(z)
    assert res["p_value"] == pytest.approx(p)
    same = stats.delong(y, pa, pa)
    assert same["p_value"] == 1.0
