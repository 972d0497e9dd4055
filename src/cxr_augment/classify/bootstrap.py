"""Patient bootstrap of every metric, vectorised: CIs, paired differences, seeds, thresholds.

A bootstrap resample draws patients with replacement; a patient drawn ``w`` times brings all
of its images with weight ``w``. Every metric of ``metrics.point_metrics`` is a function of
weighted counts (confusion counts; the weighted Mann-Whitney sum for ROC AUC; weighted
precision-recall steps for PR AUC), so a block of resamples is a weight matrix (resamples x
images) and all resamples are computed at once.

Rules, the same for every metric:
- a resample without a positive or without a negative image is dropped for every metric, and
  the number dropped is reported (``resamples_used`` of ``resamples``);
- several seeds of an experiment: each resample's metric is the mean over the seeds (the
  seed-averaged estimate), and its paired difference is the difference of those means;
- ``threshold="resampled"``: each resample also draws the validation set's patients and
  chooses the threshold there (maximum F1, as ``metrics.choose_threshold``), so the CI carries
  the threshold's uncertainty; a resample whose validation draw has no positive is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxr_augment.classify.metrics import METRICS

CHUNK = 128  # resamples per block: bounded memory at any test-set size


def cluster_index(clusters: np.ndarray) -> tuple[np.ndarray, int]:
    inv = np.unique(np.asarray(clusters), return_inverse=True)[1]
    return inv, int(inv.max() + 1) if len(inv) else 0


def weight_blocks(
    clusters: np.ndarray, resamples: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Image weights (block x images) of ``resamples`` patient resamples, block by block."""
    inv, k = cluster_index(clusters)
    done = 0
    while done < resamples:
        b = min(CHUNK, resamples - done)
        counts = rng.multinomial(k, np.full(k, 1.0 / k), size=b).astype(float)
        yield counts[:, inv]
        done += b


@dataclass
class _Sorted:
    """Scores sorted descending and grouped by distinct value (for AUC, AP, thresholds)."""

    order: np.ndarray
    starts: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, p: np.ndarray) -> _Sorted:
        order = np.argsort(-p, kind="mergesort")
        ps = p[order]
        starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
        return cls(order, starts, ps[starts])


def _grouped(w: np.ndarray, s: _Sorted) -> np.ndarray:
    return np.add.reduceat(w[:, s.order], s.starts, axis=1)


def weighted_metrics(
    w: np.ndarray, y: np.ndarray, p: np.ndarray, threshold: np.ndarray | float
) -> dict[str, np.ndarray]:
    """Every metric of ``METRICS`` for each row of image weights ``w`` (rows x images).

    ``threshold`` is one value or one per row. Conventions as ``metrics.point_metrics``
    (a ratio with a zero denominator is 0); rows without both classes give NaN AUCs.
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    w = np.atleast_2d(w)
    thr = np.broadcast_to(np.asarray(threshold, dtype=float), (w.shape[0],))
    predicted = p[None, :] >= thr[:, None]
    posw = w * (y == 1)
    negw = w * (y == 0)
    tp = (posw * predicted).sum(1)
    fp = (negw * predicted).sum(1)
    P, N = posw.sum(1), negw.sum(1)
    fn, tn = P - tp, N - fp
    n = P + N
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(P > 0, tp / P, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        po = np.where(n > 0, (tp + tn) / n, 0.0)
        pe = np.where(n > 0, ((tp + fp) * P + (fn + tn) * N) / n**2, 0.0)
        kappa = np.where(pe < 1, (po - pe) / (1 - pe), 0.0)
        s = _Sorted.of(p)
        gp, gn = _grouped(posw, s), _grouped(negw, s)
        # descending order: negatives strictly below a group are those after it
        neg_below = N[:, None] - np.cumsum(gn, axis=1)
        auc = (gp * (neg_below + 0.5 * gn)).sum(1) / (P * N)
        tp_at = np.cumsum(gp, axis=1)
        pp_at = tp_at + np.cumsum(gn, axis=1)
        prec_at = np.where(pp_at > 0, tp_at / np.where(pp_at > 0, pp_at, 1), 0.0)
        ap = (gp * prec_at).sum(1) / P
    both = (P > 0) & (N > 0)
    return {
        "accuracy": po,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": np.where(both, auc, np.nan),
        "pr_auc": np.where(both, ap, np.nan),
        "kappa": kappa,
    }


def best_thresholds(w: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per row of weights, the threshold maximising F1 (ties: the lowest such threshold);
    NaN for a row without a positive."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    w = np.atleast_2d(w)
    s = _Sorted.of(p)
    gp, gn = _grouped(w * (y == 1), s), _grouped(w * (y == 0), s)
    P = gp.sum(1, keepdims=True)
    tp = np.cumsum(gp, axis=1)
    pp = tp + np.cumsum(gn, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(pp + P > 0, 2 * tp / (pp + P), 0.0)
    # only scores present in the resample are candidates (as on the resampled images)
    f1 = np.where(gp + gn > 0, f1, -np.inf)
    # the lowest threshold among the maxima: the last maximum in descending order
    rev = f1[:, ::-1]
    best = f1.shape[1] - 1 - np.argmax(rev >= rev.max(1, keepdims=True) - 1e-12, axis=1)
    return np.where(P[:, 0] > 0, s.values[best], np.nan)


@dataclass
class Evaluation:
    """One experiment on one split: y, scores per seed, patients, thresholds per seed, and
    (for ``threshold="resampled"``) the validation split it chooses thresholds on."""

    y: np.ndarray
    probs: np.ndarray  # (seeds, images)
    patients: np.ndarray
    thresholds: np.ndarray  # (seeds,), chosen on validation
    val_y: np.ndarray | None = None
    val_probs: np.ndarray | None = None  # (seeds, validation images)
    val_patients: np.ndarray | None = None

    def __post_init__(self):
        self.y = np.asarray(self.y, dtype=int)
        self.probs = np.atleast_2d(np.asarray(self.probs, dtype=float))
        self.thresholds = np.atleast_1d(np.asarray(self.thresholds, dtype=float))
        if self.probs.shape != (len(self.thresholds), len(self.y)):
            raise ValueError(
                f"scores of shape {self.probs.shape} for {len(self.thresholds)} seeds and "
                f"{len(self.y)} images"
            )


def _seed_mean(
    ev: Evaluation, w: np.ndarray, val_w: np.ndarray | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Seed-averaged metrics for a block of weights, and which rows are valid."""
    valid = ((w * (ev.y == 1)).sum(1) > 0) & ((w * (ev.y == 0)).sum(1) > 0)
    out = {m: np.zeros(w.shape[0]) for m in METRICS}
    for s in range(ev.probs.shape[0]):
        if val_w is None:
            thr = ev.thresholds[s]
        else:
            thr = best_thresholds(val_w, ev.val_y, ev.val_probs[s])
            valid &= ~np.isnan(thr)
            thr = np.nan_to_num(thr, nan=1.0)
        m = weighted_metrics(w, ev.y, ev.probs[s], thr)
        for k in METRICS:
            out[k] += m[k] / ev.probs.shape[0]
    return out, valid


def _draws(evs: list[Evaluation], resamples: int, seed: int, threshold: str):
    """Blocks of (test weights, validation weights or None), shared by paired evaluations."""
    rng = np.random.default_rng(seed)
    val_rng = np.random.default_rng([seed, 1])
    first = evs[0]
    resampled = threshold == "resampled"
    if resampled and first.val_y is None:
        raise ValueError('threshold="resampled" needs the validation scores')
    val_blocks = weight_blocks(first.val_patients, resamples, val_rng) if resampled else None
    for w in weight_blocks(first.patients, resamples, rng):
        yield w, (next(val_blocks) if resampled else None)


def _percentile(s: np.ndarray, alpha: float) -> tuple[float, float]:
    if len(s) == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(s, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def point(ev: Evaluation) -> dict[str, float]:
    """Seed-averaged point estimates (weights all 1, each seed at its validation threshold)."""
    m, _ = _seed_mean(ev, np.ones((1, len(ev.y))), None)
    return {k: float(v[0]) for k, v in m.items()}


def metric_cis(
    ev: Evaluation,
    resamples: int = 2000,
    seed: int = 7,
    threshold: str = "fixed",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Seed-averaged metrics with 95 % patient-bootstrap percentile CIs.

    Columns: metric, value, ci_low, ci_high, resamples, resamples_used.
    """
    est = point(ev)
    samples = {k: [] for k in METRICS}
    for w, vw in _draws([ev], resamples, seed, threshold):
        m, valid = _seed_mean(ev, w, vw)
        for k in METRICS:
            samples[k].append(m[k][valid])
    rows = []
    for k in METRICS:
        s = np.concatenate(samples[k]) if samples[k] else np.array([])
        lo, hi = _percentile(s, alpha)
        rows.append(
            {
                "metric": k,
                "value": est[k],
                "ci_low": lo,
                "ci_high": hi,
                "resamples": resamples,
                "resamples_used": len(s),
            }  # fmt: skip
        )
    return pd.DataFrame(rows)


def paired_difference(
    a: Evaluation,
    b: Evaluation,
    metrics: tuple[str, ...] = ("accuracy", "f1", "roc_auc", "kappa"),
    resamples: int = 2000,
    seed: int = 7,
    threshold: str = "fixed",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Patient bootstrap of the seed-averaged difference A - B on the same images.

    The p-value is two-sided: twice the smaller share of resampled differences on either side
    of zero, counted as (1 + count) / (1 + resamples) so that it is never 0 (at most 1). Columns: metric, difference, ci_low, ci_high, p_value, resamples,
    resamples_used.
    """
    if len(a.y) != len(b.y) or not np.array_equal(a.y, b.y):
        raise ValueError("a paired comparison needs the same images with the same labels")
    pa, pb = point(a), point(b)
    diffs = {k: [] for k in metrics}
    for w, vw in _draws([a, b], resamples, seed, threshold):
        ma, va = _seed_mean(a, w, vw)
        mb, vb = _seed_mean(b, w, vw)
        valid = va & vb
        for k in metrics:
            diffs[k].append((ma[k] - mb[k])[valid])
    rows = []
    for k in metrics:
        d = np.concatenate(diffs[k]) if diffs[k] else np.array([])
        lo, hi = _percentile(d, alpha)
        if len(d):  # (1 + count) / (1 + resamples): never 0 from a finite bootstrap
            side = min(np.sum(d <= 0), np.sum(d >= 0))
            p = min(1.0, 2 * (1 + side) / (1 + len(d)))
        else:
            p = float("nan")
        rows.append(
            {
                "metric": k,
                "difference": pa[k] - pb[k],
                "ci_low": lo,
                "ci_high": hi,
                "p_value": float(p),
                "resamples": resamples,
                "resamples_used": len(d),
            }  # fmt: skip
        )
    return pd.DataFrame(rows)


def seed_interval(
    values: np.ndarray, alpha: float = 0.05, bounds: tuple[float, float] = (-np.inf, np.inf)
) -> tuple[float, float, float]:
    """Mean and t-interval of a metric across seeds, clipped to the metric's ``bounds`` (NaN
    bounds for one seed)."""
    from scipy import stats as sps

    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    if len(v) < 2:
        return float(v.mean()), float("nan"), float("nan")
    half = sps.t.ppf(1 - alpha / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    lo, hi = max(bounds[0], v.mean() - half), min(bounds[1], v.mean() + half)
    return float(v.mean()), float(lo), float(hi)
