"""Tests between two classifiers on the same images (thesis 3.4.3).

- McNemar's test on the paired correct / wrong decisions (statsmodels; exact binomial when
  the discordant count is small, chi-square with continuity correction otherwise).
- DeLong's test for two correlated ROC AUCs (DeLong et al., 1988), with the fast midrank
  algorithm of Sun and Xu (2014).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as _mcnemar


def mcnemar(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, exact_below: int = 25) -> dict:
    """McNemar's test of two classifiers' decisions on the same images."""
    y = np.asarray(y, dtype=int)
    a = np.asarray(pred_a, dtype=int) == y
    b = np.asarray(pred_b, dtype=int) == y
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    discordant = int(table[0, 1] + table[1, 0])
    exact = discordant < exact_below
    res = _mcnemar(table, exact=exact, correction=True)
    return {
        "statistic": float(res.statistic),
        "p_value": float(res.pvalue),
        "b": int(table[0, 1]),
        "c": int(table[1, 0]),
        "exact": exact,
    }


def _midrank(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    z = x[order]
    n = len(x)
    t = np.zeros(n)
    i = 0
    while i < n:
        j = i
        while j < n and z[j] == z[i]:
            j += 1
        t[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(n)
    out[order] = t
    return out


def delong(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> dict:
    """DeLong's test: are the two correlated AUCs on (y, p_a), (y, p_b) equal?"""
    y = np.asarray(y, dtype=int)
    preds = np.vstack([np.asarray(p_a, float), np.asarray(p_b, float)])
    pos = preds[:, y == 1]
    neg = preds[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        return {
            "auc_a": float("nan"),
            "auc_b": float("nan"),
            "z": float("nan"),
            "p_value": float("nan"),
        }
    tx = np.vstack([_midrank(r) for r in pos])
    ty = np.vstack([_midrank(r) for r in neg])
    tz = np.vstack([_midrank(np.concatenate([pos[k], neg[k]])) for k in range(2)])
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    cov = np.cov(v01) / m + np.cov(v10) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    if var <= 0:
        return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "z": 0.0, "p_value": 1.0}
    z = (aucs[0] - aucs[1]) / np.sqrt(var)
    return {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "z": float(z),
        "p_value": float(2 * sps.norm.sf(abs(z))),
    }
