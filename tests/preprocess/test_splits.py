import numpy as np
import pandas as pd
import pytest

from cxr_augment.preprocess import splits


def _images(n_patients=400, seed=0):
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 4, n_patients)
    patients = np.repeat(np.arange(1, n_patients + 1), per)
    sick = rng.random(n_patients) < 0.1
    positive = np.repeat(sick, per) & (rng.random(len(patients)) < 0.8)
    return pd.Series(patients), pd.Series(positive.astype(float))


def test_no_patient_on_both_sides_and_twenty_percent_by_patient():
    patients, positive = _images()
    split = splits.patient_split(patients, positive, 0.2, seed=1)
    table = pd.DataFrame({"patient_id": patients, "split": split})
    assert splits.leaking_patients(table).empty
    per_patient = table.drop_duplicates("patient_id")
    assert per_patient["split"].eq("internal_test").mean() == pytest.approx(0.2, abs=0.01)


def test_stratified_by_the_target():
    patients, positive = _images(1000, seed=3)
    split = splits.patient_split(patients, positive, 0.2, seed=2)
    df = pd.DataFrame({"p": patients, "pos": positive > 0, "split": split})
    pos_patients = df.groupby("p").agg(pos=("pos", "any"), split=("split", "first"))
    share = pos_patients.groupby("pos")["split"].apply(lambda s: (s == "internal_test").mean())
    assert share[True] == pytest.approx(0.2, abs=0.02) and share[False] == pytest.approx(
        0.2, abs=0.01
    )


def test_same_seed_same_split():
    patients, positive = _images()
    a = splits.patient_split(patients, positive, 0.2, seed=5)
    b = splits.patient_split(patients, positive, 0.2, seed=5)
    c = splits.patient_split(patients, positive, 0.2, seed=6)
    pd.testing.assert_series_equal(a, b)
    assert not a.equals(c)


def test_leaking_patients_are_found():
    table = pd.DataFrame({"patient_id": [1, 1, 2], "split": ["train", "internal_test", "train"]})
    assert splits.leaking_patients(table)["patient_id"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="test_fraction"):
        splits.patient_split(pd.Series([1]), pd.Series([0.0]), 1.5, 0)
