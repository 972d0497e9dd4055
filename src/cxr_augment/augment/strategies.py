"""Augmentation strategies (thesis 4.5, Tables 4 and 5): which training images are augmented,
and how many times.

- ``unbalanced`` (Table 4): every positive augmented 11 times, one third of the negatives once.
- ``balanced`` (Table 5): all positives and as many randomly chosen negatives, each augmented
  4 times.
- ``misclassified`` (thesis 4.5, Figure 20): the training images the baseline classifier gets
  wrong that lie closer to its decision boundary (in the plane of the first two principal
  components of its penultimate features) than the mean distance, augmented until the training
  set is almost balanced (``misclassified_selection``).

A selection is a table (``key``, ``copies``); the strategies make one from the training split,
and any other selection (the misclassified-sample strategy, say) can be passed instead.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

STRATEGIES = {
    # Table 4: all real images stay; positives x 11, a third of the negatives x 1
    "unbalanced": {
        "positive_copies": 11,
        "negative_fraction": 1 / 3,
        "negative_copies": 1,
        "real": "all",
    },
    # Table 5: the positives and as many negatives (the real set shrinks to these), each x 4
    "balanced": {
        "positive_copies": 4,
        "negatives_per_positive": 1.0,
        "negative_copies": 4,
        "real": "selected",
    },
    # thesis 4.5: all real images stay; the copies come from ``misclassified_selection``
    "misclassified": {"real": "all", "external": True},
}


def settings(strategy: str | dict) -> dict:
    if isinstance(strategy, str) and strategy not in STRATEGIES:
        raise ValueError(f"unknown augmentation strategy {strategy!r}: one of {sorted(STRATEGIES)}")
    s = STRATEGIES[strategy] if isinstance(strategy, str) else {"real": "all", **strategy}
    if s.get("external"):
        return s
    if ("negative_fraction" in s) == ("negatives_per_positive" in s):
        raise ValueError("a strategy sets exactly one of negative_fraction, negatives_per_positive")
    if s["real"] not in ("all", "selected"):
        raise ValueError(f"strategy real must be 'all' or 'selected', got {s['real']!r}")
    return s


def select(train: pd.DataFrame, strategy: str | dict, seed: int) -> pd.DataFrame:
    """The augmentation selection of a strategy over the training images.

    Args:
        train: training rows with ``key`` and a 0/1 ``target`` (NaN: not selected).
        strategy: a name in ``STRATEGIES`` or its settings: ``positive_copies``,
            ``negative_copies``, and either ``negative_fraction`` (of all negatives) or
            ``negatives_per_positive``.
        seed: which negatives are chosen.

    Returns:
        ``key``, ``target``, ``copies`` for every selected image.
    """
    s = settings(strategy)
    if s.get("external"):
        raise ValueError(
            f"the {strategy!r} strategy's selection comes from the baseline classifier "
            "(misclassified_selection), not from the training labels alone"
        )
    pos = train[train["target"] == 1]
    neg = train[train["target"] == 0]
    if "negative_fraction" in s:
        n_neg = int(math.floor(len(neg) * float(s["negative_fraction"])))
    else:
        n_neg = min(len(neg), int(round(len(pos) * float(s["negatives_per_positive"]))))
    rng = np.random.default_rng(seed)
    neg = neg.iloc[np.sort(rng.permutation(len(neg))[:n_neg])]
    out = pd.concat(
        [pos.assign(copies=int(s["positive_copies"])), neg.assign(copies=int(s["negative_copies"]))]
    )
    return out[["key", "target", "copies"]].reset_index(drop=True)


def counts_table(
    train: pd.DataFrame, selection: pd.DataFrame, strategy: str | dict
) -> pd.DataFrame:
    """Thesis Tables 4 / 5: per class, the original training images, the real images kept in
    the augmented training set, and the generated images."""
    s = settings(strategy)
    rows = []
    for cls, name in ((0, "Negative"), (1, "Positive")):
        original = int((train["target"] == cls).sum())
        sel = selection[selection["target"] == cls]
        rows.append(
            {
                "class": name,
                "original_images": original,
                "real_images": original if s["real"] == "all" else len(sel),
                "selected": len(sel),
                "copies": int(sel["copies"].max()) if len(sel) else 0,
                "generated_images": int(sel["copies"].sum()),
            }
        )
    return pd.DataFrame(rows)


def misclassified_selection(points: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, dict]:
    """The misclassified strategy's selection (thesis 4.5) from the baseline's training images.

    An image is selected when the baseline misclassifies it (``pred`` differs from
    ``target``) and its distance to the decision boundary in the PCA plane is below the mean
    distance of all the images (``distance``: unsigned or signed; its absolute value is used).
    The selected negatives get ``negative_copies`` each; the selected positives get as many
    copies as bring the positives of the augmented set (real plus generated) to ``balance``
    times its negatives ("almost balanced"), at most ``max_copies`` and at least one.

    Args:
        points: every candidate training image: ``key``, ``target`` (0/1), ``pred`` (the
            baseline's 0/1 decision at its validation threshold), ``distance``.
        params: ``balance`` (positives / negatives after augmentation, default 1.0),
            ``negative_copies`` (default 1), ``max_copies`` (default 50).

    Returns:
        The selection (``key``, ``target``, ``copies``) and a summary of the counts.
    """
    balance = float(params.get("balance", 1.0))
    neg_copies = int(params.get("negative_copies", 1))
    max_copies = int(params.get("max_copies", 50))
    if balance <= 0 or neg_copies < 0 or max_copies < 1:
        raise ValueError(
            "misclassified: balance must be > 0, negative_copies >= 0 and max_copies >= 1, got "
            f"{balance}, {neg_copies}, {max_copies}"
        )
    dist = points["distance"].abs().to_numpy(float)
    mean = float(np.mean(dist))
    wrong = points["pred"].to_numpy(int) != points["target"].to_numpy(int)
    near = dist < mean
    chosen = points[wrong & near]
    pos = chosen[chosen["target"] == 1]
    neg = chosen[chosen["target"] == 0]
    n_pos = int((points["target"] == 1).sum())
    n_neg = int((points["target"] == 0).sum())
    if len(pos):
        need = balance * (n_neg + len(neg) * neg_copies) - n_pos
        pos_copies = int(np.clip(math.ceil(need / len(pos)), 1, max_copies))
    else:
        pos_copies = 0
    out = pd.concat([pos.assign(copies=pos_copies), neg.assign(copies=neg_copies)])
    out = out[out["copies"] > 0][["key", "target", "copies"]].reset_index(drop=True)
    out["target"] = out["target"].astype(float)
    total_pos = n_pos + len(pos) * pos_copies
    total_neg = n_neg + len(neg) * neg_copies
    summary = {
        "images": len(points),
        "misclassified": int(wrong.sum()),
        "mean_distance": mean,
        "misclassified_near": int((wrong & near).sum()),
        "selected_positives": len(pos),
        "selected_negatives": len(neg) if neg_copies else 0,
        "positive_copies": pos_copies,
        "negative_copies": neg_copies,
        "positives_after": total_pos,
        "negatives_after": total_neg,
        "balance_target": balance,
        "balance_after": total_pos / total_neg if total_neg else float("nan"),
    }
    return out, summary
