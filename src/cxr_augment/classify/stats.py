"""Paired tests between classifiers on the same images (thesis 3.4.3), patient-aware.

Images cluster in patients (several views and studies per patient; the official test set gives
a study's label to every image of it), so a test that treats images as independent is too
liberal. Every test here takes the patient of each image:

- ``delong``: DeLong's test of two correlated ROC AUCs (DeLong et al., 1988), with the
  structural components summed per patient and the variance of Obuchowski (1997) for clustered
  data. Several score vectors per classifier (one per training seed) are compared through the
  mean AUC of each classifier, the variance coming from the joint covariance of all of them.
  The statistic is read against a t distribution whose degrees of freedom are Satterthwaite's
  for the variance's two parts (the positives' and the negatives' patients; ``reference="t"``,
  the default): with 15-60 positive images the normal reference rejects 5.7-6 % of the time
  under the null, the t reference 4-5 % (``tests/classify/test_stats.py``). With many patients
  the two agree; ``reference="normal"`` is the published test, and with one image per
  patient DeLong's test exactly.
- ``mcnemar_clustered``: McNemar's test on the thresholded decisions, adjusted for clustering
  (Durkalski et al., 2003): per patient the difference between the images classifier A gets
  right and B gets wrong and the reverse (averaged over seeds); the statistic
  ``(sum d)^2 / sum d^2`` is chi-square with one degree of freedom. With one image per patient
  and one seed it is McNemar's test without continuity correction.
- ``mcnemar``: the thesis's image-level McNemar (statsmodels), kept to show the difference.
- ``holm``: Holm's step-down adjustment within a family of comparisons.

A test that cannot be computed (too few positives, no variance, no discordant decision) returns
``p_value`` NaN and a ``note`` that says why, never a p-value of 1.
"""

from __future__ import annotations

import numpy as np

# scipy.stats and statsmodels (0.6 s to import) are imported where used: every pipeline module
# is imported whenever the project loads (each `kedro run`, each Dagster code load)


def mcnemar(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, exact_below: int = 25) -> dict:
    """Image-level McNemar's test (images taken as independent; statsmodels)."""
    y = np.asarray(y, dtype=int)
    a = np.asarray(pred_a, dtype=int) == y
    b = np.asarray(pred_b, dtype=int) == y
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    discordant = int(table[0, 1] + table[1, 0])
    exact = discordant < exact_below
    from statsmodels.stats.contingency_tables import mcnemar as _mcnemar

    res = _mcnemar(table, exact=exact, correction=True)
    return {
        "statistic": float(res.statistic),
        "p_value": float(res.pvalue),
        "b": int(table[0, 1]),
        "c": int(table[1, 0]),
        "exact": exact,
    }


def _as_2d(scores) -> np.ndarray:
    a = np.asarray(scores, dtype=float)
    return a[None, :] if a.ndim == 1 else a


def _clusters(clusters, n: int) -> np.ndarray:
    if clusters is None:
        return np.arange(n)
    clusters = np.asarray(clusters)
    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster ids for {n} images")
    return np.unique(clusters, return_inverse=True)[1]


def mcnemar_clustered(
    y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, clusters: np.ndarray | None = None
) -> dict:
    """Cluster-adjusted McNemar test (Durkalski et al., 2003) of two classifiers' decisions.

    Args:
        y: 0/1 truth per image.
        pred_a, pred_b: 0/1 decisions per image, or (seeds, images) for several seeds; each
            image's correctness is averaged over a classifier's seeds.
        clusters: the patient of each image (None: every image its own patient).

    Returns:
        ``statistic``, ``p_value``, ``b`` / ``c`` (images where only A / only B is right,
        summed over seeds and divided by the seed count), ``clusters``, ``discordant_clusters``
        and a ``note`` when the test is undefined.
    """
    y = np.asarray(y, dtype=int)
    a = (_as_2d(pred_a).astype(int) == y[None, :]).mean(axis=0)
    b = (_as_2d(pred_b).astype(int) == y[None, :]).mean(axis=0)
    inv = _clusters(clusters, len(y))
    d = np.bincount(inv, weights=a - b)
    only_a = np.clip(a - b, 0, None).sum()
    only_b = np.clip(b - a, 0, None).sum()
    denom = float(np.sum(d**2))
    out = {
        "b": float(only_a),
        "c": float(only_b),
        "clusters": int(inv.max() + 1) if len(inv) else 0,
        "discordant_clusters": int(np.sum(np.abs(d) > 1e-12)),
    }
    if denom <= 1e-12:
        return {**out, "statistic": float("nan"), "p_value": float("nan"),
                "note": "no patient with discordant decisions"}  # fmt: skip
    from scipy.stats import chi2

    stat = float(d.sum() ** 2 / denom)
    return {**out, "statistic": stat, "p_value": float(chi2.sf(stat, 1)), "note": ""}


def auc_components(
    y: np.ndarray, scores: np.ndarray, clusters: np.ndarray | None = None, parts: bool = False
) -> tuple:
    """AUCs of several score vectors and their covariance, clustered by patient.

    Args:
        y: 0/1 truth per image.
        scores: (k, images): k score vectors on the same images.
        clusters: the patient of each image (None: images independent, DeLong's covariance).

    Returns:
        (aucs of shape (k,), covariance of shape (k, k)) by Obuchowski's (1997) estimator: the
        placement values of the positives (fraction of negatives scored lower, ties half) and
        of the negatives are summed per patient, and the covariance of those sums gives the
        AUCs' covariance. NaN when a class has fewer than two images (or two patients).
        ``parts``: also the covariance's positive and negative parts (``S10 / m``,
        ``S01 / n``) and the number of patients with a positive and with a negative image.
    """
    y = np.asarray(y, dtype=int)
    scores = _as_2d(scores)
    k = scores.shape[0]
    inv = _clusters(clusters, len(y))
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    n_clusters = int(inv.max() + 1) if len(inv) else 0
    i10 = len(np.unique(inv[pos]))
    i01 = len(np.unique(inv[neg]))
    if m < 2 or n < 2 or i10 < 2 or i01 < 2:
        nan = np.full(k, np.nan), np.full((k, k), np.nan)
        return (*nan, (np.full((k, k), np.nan),) * 2 + (i10, i01)) if parts else nan
    from scipy.stats import rankdata

    ranks_all = np.vstack([rankdata(s) for s in scores])
    ranks_pos = np.vstack([rankdata(s[pos]) for s in scores])
    ranks_neg = np.vstack([rankdata(s[neg]) for s in scores])
    v10 = (ranks_all[:, pos] - ranks_pos) / n  # per positive: share of negatives below
    v01 = 1.0 - (ranks_all[:, neg] - ranks_neg) / m  # per negative: share of positives above
    aucs = v10.mean(axis=1)
    m_k = np.bincount(inv[pos], minlength=n_clusters).astype(float)
    n_k = np.bincount(inv[neg], minlength=n_clusters).astype(float)
    s10 = np.vstack([np.bincount(inv[pos], weights=v, minlength=n_clusters) for v in v10])
    s01 = np.vstack([np.bincount(inv[neg], weights=v, minlength=n_clusters) for v in v01])
    r10 = s10 - m_k[None, :] * aucs[:, None]
    r01 = s01 - n_k[None, :] * aucs[:, None]
    S10 = i10 / ((i10 - 1) * m) * (r10 @ r10.T)
    S01 = i01 / ((i01 - 1) * n) * (r01 @ r01.T)
    S11 = n_clusters / (n_clusters - 1) * (r10 @ r01.T)
    cov = S10 / m + S01 / n + (S11 + S11.T) / (m * n)
    if parts:
        return aucs, cov, (S10 / m, S01 / n, i10, i01)
    return aucs, cov


def satterthwaite_df(v10: float, v01: float, i10: int, i01: int) -> float:
    """Satterthwaite's degrees of freedom of a variance ``v10 + v01`` whose parts are
    estimated from ``i10`` and ``i01`` independent patients: ``(v10 + v01)^2 / (v10^2 /
    (i10 - 1) + v01^2 / (i01 - 1))``; infinite when both parts are zero."""
    denom = v10**2 / (i10 - 1) + v01**2 / (i01 - 1)
    return float((v10 + v01) ** 2 / denom) if denom > 0 else float("inf")


def delong(
    y: np.ndarray,
    p_a: np.ndarray,
    p_b: np.ndarray,
    clusters: np.ndarray | None = None,
    reference: str = "t",
) -> dict:
    """Are the (mean) AUCs of classifiers A and B on the same images equal?

    ``p_a`` / ``p_b`` are scores per image, or (seeds, images) for several seeds of a
    classifier: the test is then of the seed-mean AUCs. ``clusters`` gives each image's
    patient (Obuchowski's clustered variance); None takes images as independent (DeLong).
    ``reference``: ``"t"`` (Satterthwaite's degrees of freedom, ``df`` in the result) or
    ``"normal"`` (the published test; ``df`` infinite).
    """
    if reference not in ("t", "normal"):
        raise ValueError(f"delong: reference must be 't' or 'normal', got {reference!r}")
    a, b = _as_2d(p_a), _as_2d(p_b)
    aucs, cov, (v10, v01, i10, i01) = auc_components(y, np.vstack([a, b]), clusters, parts=True)
    c = np.concatenate([np.full(len(a), 1 / len(a)), np.full(len(b), -1 / len(b))])
    auc_a, auc_b = float(aucs[: len(a)].mean()), float(aucs[len(a) :].mean())
    out = {"auc_a": auc_a, "auc_b": auc_b}
    undefined = {"z": float("nan"), "df": float("nan"), "p_value": float("nan")}
    if np.isnan(aucs).any():
        return {**out, **undefined,
                "note": "fewer than two positive or negative images (or patients)"}  # fmt: skip
    var = float(c @ cov @ c)
    if not var > 1e-14:
        return {**out, **undefined,
                "note": "zero variance of the AUC difference (e.g. both AUCs 0 or 1, or "
                "identical scores): the test is undefined"}  # fmt: skip
    z = (auc_a - auc_b) / np.sqrt(var)
    if reference == "t":
        from scipy.stats import t

        df = satterthwaite_df(float(c @ v10 @ c), float(c @ v01 @ c), i10, i01)
        p = 2 * t.sf(abs(z), df)
    else:
        from scipy.stats import norm

        df, p = float("inf"), 2 * norm.sf(abs(z))
    return {**out, "z": float(z), "df": df, "p_value": float(p), "note": ""}


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values of one family (NaN entries stay NaN and are not counted): the
    ``k``-th smallest of ``m`` times ``m - k + 1``, made non-decreasing, at most 1. (The same
    values as statsmodels' ``multipletests(method="holm")``, which runs a full garbage
    collection on every call: a third of a second each in a process that has loaded torch.)"""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = q.size
    if m:
        order = np.argsort(q, kind="stable")
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(np.maximum.accumulate(q[order] * np.arange(m, 0, -1)), 1.0)
        out[ok] = adjusted
    return out
