"""Augmentation strategies (thesis 4.5, Tables 4 and 5): which training images are augmented,
and how many times.

- ``unbalanced`` (Table 4): every positive augmented 11 times, one third of the negatives once.
- ``balanced`` (Table 5): all positives and as many randomly chosen negatives, each augmented
  4 times.

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
}


def settings(strategy: str | dict) -> dict:
    s = STRATEGIES[strategy] if isinstance(strategy, str) else {"real": "all", **strategy}
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
                "copies": int(sel["copies"].iloc[0]) if len(sel) else 0,
                "generated_images": int(sel["copies"].sum()),
            }
        )
    return pd.DataFrame(rows)
