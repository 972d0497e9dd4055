"""Label policies for the report labeler's uncertain (-1) and not-mentioned (empty) values.

Irvin et al. (2019) handle uncertain labels with U-Ignore (masked out of the loss), U-Zeros,
U-Ones, U-SelfTrained (train with U-Ignore, relabel the uncertain images with the model's
probability, retrain) and U-MultiClass (three classes: 0, 1, u). The thesis (4.1, Tables 6-8)
also fills not-mentioned with 0 or 1 and compares the four combinations, choosing
FillNM(0) + U-Ones.

Targets are float arrays: 0 / 1 for binary policies (NaN = masked out of the loss), or class
ids 0 / 1 / 2 (2 = uncertain) for U-MultiClass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

UNCERTAIN_POLICIES = ("ignore", "zeros", "ones", "multiclass", "self_trained")
NOT_MENTIONED_POLICIES = (0, 1, "ignore")
MULTICLASS_UNCERTAIN = 2.0
# thesis Tables 6 and 7: the original labels and the four combinations
TABLE_POLICIES = ((0, "ones"), (0, "zeros"), (1, "ones"), (1, "zeros"))


@dataclass(frozen=True)
class LabelPolicy:
    uncertain: str = "ones"
    not_mentioned: int | str = 0

    def __post_init__(self) -> None:
        if self.uncertain not in UNCERTAIN_POLICIES:
            raise ValueError(
                f"uncertain policy must be one of {UNCERTAIN_POLICIES}, got {self.uncertain!r}"
            )
        if self.not_mentioned not in NOT_MENTIONED_POLICIES:
            raise ValueError(
                f"not-mentioned policy must be one of {NOT_MENTIONED_POLICIES}, got {self.not_mentioned!r}"
            )

    @property
    def name(self) -> str:
        u = {
            "ignore": "U-Ignore",
            "zeros": "U-Zeros",
            "ones": "U-Ones",
            "multiclass": "U-MultiClass",
            "self_trained": "U-SelfTrained",
        }[self.uncertain]
        nm = "NM-Ignore" if self.not_mentioned == "ignore" else f"FillNM({self.not_mentioned})"
        return f"{nm} {u}"

    @property
    def slug(self) -> str:
        return f"nm{self.not_mentioned}_u{self.uncertain}"


def parse_policy(spec: str | dict) -> LabelPolicy:
    """``"nm0_uones"``-style slugs or ``{uncertain:, not_mentioned:}`` mappings."""
    if isinstance(spec, dict):
        nm = spec.get("not_mentioned", 0)
        return LabelPolicy(spec.get("uncertain", "ones"), nm if nm == "ignore" else int(nm))
    if not spec.startswith("nm") or "_u" not in spec:
        raise ValueError(f"policy slug must look like 'nm0_uones', got {spec!r}")
    nm, u = spec[2:].split("_u", 1)
    return LabelPolicy(u, nm if nm == "ignore" else int(nm))


def impute(raw, policy: LabelPolicy) -> np.ndarray:
    """Targets for one observation's report labels (1, 0, -1, NaN) under ``policy``.

    U-SelfTrained yields the U-Ignore targets of its first stage; ``relabel_rows`` lists the
    images its second stage relabels with a model's probabilities.
    """
    x = np.asarray(raw, dtype=float)
    out = np.full(x.shape, np.nan)
    out[x == 1.0] = 1.0
    out[x == 0.0] = 0.0
    unc = x == -1.0
    if policy.uncertain == "ones":
        out[unc] = 1.0
    elif policy.uncertain == "zeros":
        out[unc] = 0.0
    elif policy.uncertain == "multiclass":
        out[unc] = MULTICLASS_UNCERTAIN
    # ignore / self_trained: stays NaN (masked)
    nm = np.isnan(x)
    if policy.not_mentioned != "ignore":
        out[nm] = float(policy.not_mentioned)
    bad = ~(np.isnan(x) | np.isin(x, (1.0, 0.0, -1.0)))
    if bad.any():
        raise ValueError(f"report labels must be 1, 0, -1 or empty; got {np.unique(x[bad])}")
    return out


def relabel_rows(raw) -> np.ndarray:
    """Indices of the uncertain images U-SelfTrained relabels after its first stage."""
    return np.flatnonzero(np.asarray(raw, dtype=float) == -1.0)


def share(count: int, total: int, digits: int = 1) -> str:
    """``count / total`` as a percentage rounded half up from the exact fraction (a float
    rounds 4.85 % down and 0.65 % up: both are ties; 29 of 2,000 is 1.5 %, where the float
    1.45 prints 1.4). No total: 0."""
    units = math.floor(Fraction(100 * int(count) * 10**digits, max(int(total), 1)) + Fraction(1, 2))
    whole, part = divmod(units, 10**digits)
    return f"{whole}.{part:0{digits}d}" if digits else f"{whole}"


def _cell(n: int, total: int) -> str:
    return f"{n} ({share(n, total)}%)"


def distribution_table(raw: pd.Series, observation: str) -> pd.DataFrame:
    """Thesis Tables 6 / 7: counts and shares of the original labels and of the four
    FillNM x U-Ones/U-Zeros combinations."""
    x = raw.to_numpy(dtype=float)
    n = len(x)
    rows = [
        {
            "observation": observation,
            "method": "Original",
            "positive": _cell(int((x == 1).sum()), n),
            "negative": _cell(int((x == 0).sum()), n),
            "uncertain": _cell(int((x == -1).sum()), n),
            "not_mentioned": _cell(int(np.isnan(x).sum()), n),
        }
    ]
    for nm, u in TABLE_POLICIES:
        policy = LabelPolicy(u, nm)
        t = impute(x, policy)
        rows.append(
            {
                "observation": observation,
                "method": policy.name,
                "positive": _cell(int((t == 1).sum()), n),
                "negative": _cell(int((t == 0).sum()), n),
                "uncertain": "",
                "not_mentioned": "",
            }
        )
    return pd.DataFrame(rows)


def agreement_with_truth(raw, truth, policy: LabelPolicy) -> dict:
    """How well a binary policy's targets recover the truth (demo data only).

    Returns accuracy and Cohen-free counts on the images the policy keeps, the share it keeps,
    the positive rate it implies, and the true positive rate of all images.
    """
    t = impute(raw, policy)
    truth = np.asarray(truth, dtype=float)
    if policy.uncertain == "multiclass":
        t = np.where(t == MULTICLASS_UNCERTAIN, np.nan, t)  # 'u' is not a binary claim
    kept = ~np.isnan(t)
    agree = t[kept] == truth[kept]
    tp = int(((t == 1) & (truth == 1)).sum())
    return {
        "policy": policy.name,
        "images": int(len(t)),
        "kept": int(kept.sum()),
        "kept_share": float(kept.mean()) if len(t) else float("nan"),
        "accuracy": float(agree.mean()) if kept.any() else float("nan"),
        "sensitivity": tp / max(int((kept & (truth == 1)).sum()), 1),
        "implied_positive_rate": float(np.nanmean(t)) if kept.any() else float("nan"),
        "true_positive_rate": float(truth.mean()) if len(truth) else float("nan"),
    }
