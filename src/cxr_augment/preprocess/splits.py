"""Patient-level splits (thesis 3.1, after Yuan et al. 2021).

The official valid set is the validation set and the official test set (groundtruth.csv) the
test set; train.csv is split 80 / 20 into train and an internal test set **by patient**, so no
patient's images sit on both sides. Patients are stratified by whether any of their images is
positive for the target, so both sides keep its prevalence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLIT_OF_SOURCE = {"valid": "validation", "test": "test"}
SPLITS = ("train", "internal_test", "validation", "test")


def patient_split(
    patients: pd.Series, positive: pd.Series, test_fraction: float, seed: int
) -> pd.Series:
    """``train`` or ``internal_test`` for each image, assigned per patient.

    Args:
        patients: patient id per image.
        positive: per image, whether it counts as positive for stratification (NaN = unknown,
            treated as negative).
        test_fraction: share of patients (per stratum) in the internal test set.
        seed: the split seed.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    per_patient = (
        pd.DataFrame({"patient": patients.to_numpy(), "pos": positive.fillna(0).to_numpy() > 0})
        .groupby("patient", sort=True)["pos"]
        .any()
    )
    rng = np.random.default_rng(seed)
    test_patients: list = []
    for _, group in per_patient.groupby(per_patient):  # one stratum per class
        ids = group.index.to_numpy()
        ids = ids[rng.permutation(len(ids))]
        n_test = int(round(test_fraction * len(ids)))
        test_patients.extend(ids[:n_test].tolist())
    is_test = patients.isin(set(test_patients))
    return pd.Series(np.where(is_test, "internal_test", "train"), index=patients.index)


def leaking_patients(split_table: pd.DataFrame) -> pd.DataFrame:
    """Patients that appear in more than one split (should be empty)."""
    counts = split_table.groupby("patient_id")["split"].nunique()
    bad = counts[counts > 1].index
    return split_table[split_table["patient_id"].isin(bad)]
