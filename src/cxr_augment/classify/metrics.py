"""Classification metrics (thesis 3.4.2) and a stated threshold rule.

Every point estimate is the textbook formula (tests check each against scikit-learn).
The decision threshold is chosen on the validation set by maximising F1 (ties: the lowest such
threshold) and applied unchanged to the test set. Confidence intervals (patient bootstrap) are
in ``bootstrap``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "kappa")


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney statistic (NaN if only one class is present)."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    keep = ~np.isnan(y)
    y, p = y[keep], p[keep]
    pos, neg = p[y == 1], p[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = pd.Series(np.concatenate([pos, neg])).rank().to_numpy()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def confusion(y: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    y, pred = np.asarray(y).astype(int), np.asarray(pred).astype(int)
    return {
        "tp": int(((pred == 1) & (y == 1)).sum()),
        "fp": int(((pred == 1) & (y == 0)).sum()),
        "fn": int(((pred == 0) & (y == 1)).sum()),
        "tn": int(((pred == 0) & (y == 0)).sum()),
    }


def _safe(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def point_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """All metrics at ``threshold`` (prediction: p >= threshold)."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    pred = (p >= threshold).astype(int)
    c = confusion(y, pred)
    n = len(y)
    precision = _safe(c["tp"], c["tp"] + c["fp"])
    recall = _safe(c["tp"], c["tp"] + c["fn"])
    po = _safe(c["tp"] + c["tn"], n)
    pe = _safe(
        (c["tp"] + c["fp"]) * (c["tp"] + c["fn"]) + (c["fn"] + c["tn"]) * (c["fp"] + c["tn"]), n * n
    )
    two_classes = 0 < y.sum() < n
    from sklearn import metrics as skm  # on first use: loading the pipelines stays light

    return {
        "accuracy": po,
        "precision": precision,
        "recall": recall,
        "f1": _safe(2 * precision * recall, precision + recall),
        "roc_auc": roc_auc(y, p),
        "pr_auc": float(skm.average_precision_score(y, p)) if two_classes else float("nan"),
        "kappa": _safe(po - pe, 1 - pe) if pe < 1 else 0.0,
        **{k: float(v) for k, v in c.items()},
    }


def f1_at_thresholds(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """F1 at each threshold (prediction: p >= threshold), the values ``point_metrics`` gives
    one threshold at a time, from two sorted score lists."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    if np.isnan(p).any():
        raise ValueError(f"scores: {int(np.isnan(p).sum())} of {p.size} are NaN")
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    tp = pos.size - np.searchsorted(pos, t, side="left")
    fp = neg.size - np.searchsorted(neg, t, side="left")
    n_pos = int((y == 1).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(n_pos > 0, tp / max(n_pos, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return f1


def choose_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The threshold that maximises F1 on (y, p): the stated rule for every experiment. The
    candidates are the distinct scores, lowest first; one replaces the best so far only if its
    F1 is higher by more than 1e-12, so a tie goes to the lowest threshold."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    if y.sum() == 0 or len(y) == 0:
        return 0.5
    candidates = np.unique(p)
    best_t, best_f1 = 0.5, -1.0
    for t, f1 in zip(candidates.tolist(), f1_at_thresholds(y, p, candidates).tolist(), strict=True):
        if f1 > best_f1 + 1e-12:
            best_t, best_f1 = float(t), f1
    return best_t
