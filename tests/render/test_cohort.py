"""The synthetic cohort: CheXpert schema, Table 1 marginals, label noise, numbering."""

import numpy as np
import pandas as pd
import pytest

from cxr_augment.preprocess import chexpert as cx
from cxr_augment.render import export
from cxr_augment.render.cohort import plan_cohort, spec_from_record, spec_to_record


def _cohort_params(parameters, **sizes):
    p = parameters["demo_data"]
    return {**p["cohort"], "sizes": {**p["sizes"], **sizes}, "image": p["image"]}


@pytest.fixture(scope="module")
def plan(tiny_atlas, parameters):
    """The default-size cohort (2,000 / 200 / 300 images)."""
    return plan_cohort(tiny_atlas, _cohort_params(parameters), seed=parameters["demo_data"]["seed"])


def test_csv_schema_and_value_conventions(plan):
    train = export.chexpert_csv(plan, "train")
    valid = export.chexpert_csv(plan, "valid")
    gt = export.groundtruth_csv(plan)
    assert tuple(train.columns) == cx.TRAIN_COLUMNS
    assert tuple(valid.columns) == cx.TRAIN_COLUMNS
    assert tuple(gt.columns) == cx.GROUNDTRUTH_COLUMNS
    assert tuple(cx.TRAIN_COLUMNS[:5]) == ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
    labels = train[list(cx.OBSERVATIONS)].to_numpy()
    assert set(np.unique(labels[~np.isnan(labels)])) <= {1.0, 0.0, -1.0}
    assert set(np.unique(valid[list(cx.OBSERVATIONS)].to_numpy())) <= {0.0, 1.0}
    assert gt[list(cx.OBSERVATIONS)].dtypes.map(lambda d: d.kind == "i").all()
    assert set(gt[list(cx.OBSERVATIONS)].to_numpy().ravel()) <= {0, 1}
    for df in (train, valid):
        assert set(df["Sex"]) <= set(cx.SEXES)
        assert df["Age"].between(0, 90).all() and df["Age"].dtype.kind == "i"
        lateral = df["Frontal/Lateral"] == "Lateral"
        assert (df.loc[lateral, "AP/PA"] == "").all()
        assert set(df.loc[~lateral, "AP/PA"]) <= {"AP", "PA"}
    # text as the release writes it: 1.0 / 0.0 / -1.0 / empty
    line = train.to_csv(index=False).splitlines()[1]
    assert line.startswith("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,")
    assert set(line.split(",")[5:]) <= {"1.0", "0.0", "-1.0", ""}


def test_sizes_and_patient_numbering(plan, parameters):
    sizes = parameters["demo_data"]["sizes"]
    for split in ("train", "valid", "test"):
        part = plan[plan.split == split]
        assert len(part) == sizes[f"{split}_images"]
        pids = np.sort(part.patient_id.unique())
        assert pids[0] == cx.FIRST_PATIENT[split]
        np.testing.assert_array_equal(pids, np.arange(pids[0], pids[0] + len(pids)))
    for split in ("valid", "test"):
        assert (plan[plan.split == split].study_id == 1).all()
    train = plan[plan.split == "train"]
    assert train.groupby("patient_id").study_id.max().between(1, 3).all()
    per_study = train.groupby(["patient_id", "study_id"]).view.agg(tuple)
    assert set(per_study) <= {("frontal",), ("frontal", "lateral")}
    assert plan.Path.is_unique
    test_paths = plan[plan.split == "test"].Path
    assert test_paths.str.match(
        r"CheXpert-v1\.0/test/patient\d{5}/study1/view[12]_(frontal|lateral)\.jpg"
    ).all()


@pytest.mark.parametrize("obs", ["Pneumothorax", "Pleural Effusion"])
def test_label_marginals_follow_table_1(plan, obs):
    train = plan[plan.split == "train"]
    col = train[obs]
    observed = np.array(
        [(col == 1).mean(), (col == -1).mean(), (col == 0).mean(), col.isna().mean()]
    )
    expected = np.array(cx.TABLE1_COUNTS[obs]) / cx.TABLE1_IMAGES
    assert np.abs(observed - expected).max() * 100 <= 1.5
    # the quota fills whole studies: the error is at most one two-view study
    assert np.abs(observed - expected).max() <= 2.5 / len(train)


def test_no_finding_is_consistent_with_the_pathologies(plan):
    train = plan[plan.split == "train"]
    flagged = train[list(cx.PATHOLOGIES)].isin([1.0, -1.0]).any(axis=1)
    assert (train.loc[~flagged, "No Finding"] == 1.0).all()
    assert train.loc[flagged, "No Finding"].isna().all()
    truth_nf = plan["truth_No Finding"] == 1
    assert (plan.loc[truth_nf, [f"truth_{o}" for o in cx.PATHOLOGIES]] == 0).all().all()


def test_labeler_noise_draws_uncertain_and_unmentioned_from_both_truths(plan):
    train = plan[plan.split == "train"]
    for obs in ("Pneumothorax", "Pleural Effusion"):
        for mask in (train[obs] == -1, train[obs].isna()):
            truth = train.loc[mask, f"truth_{obs}"]
            assert truth.min() == 0 and truth.max() == 1, obs
        positives = train.loc[train[obs] == 1, f"truth_{obs}"].mean()
        negatives = train.loc[train[obs] == 0, f"truth_{obs}"].mean()
        assert positives > 0.8 and negatives < 0.15


def test_valid_and_test_labels_are_the_truth(plan):
    for split in ("valid", "test"):
        part = plan[plan.split == split]
        for obs in cx.OBSERVATIONS:
            np.testing.assert_array_equal(part[obs].to_numpy(), part[f"truth_{obs}"].to_numpy())


def test_views_of_a_study_share_labels_findings_and_devices(plan, parameters):
    cols = [*cx.OBSERVATIONS, "spec_findings", "spec_devices", "spec_device_seed"]
    checked = {"train": 0, "valid": 0, "test": 0}
    studies = dict.fromkeys(checked, 0)
    for (split, _, _), group in plan.groupby(["split", "patient_id", "study_id"]):
        studies[split] += 1
        if len(group) > 1:
            assert group["view"].is_unique, group["view"].tolist()  # a frontal and a lateral
            first = group[cols].iloc[0]
            for _, row in group[cols].iterrows():
                pd.testing.assert_series_equal(row, first, check_names=False)
            checked[split] += 1
    # each study has two views with probability two_view_fraction (train 0.2, valid 0.17,
    # test 0.34 of 1,647 / 165 / 233 studies: about 330 / 28 / 79; this seed: 353 / 35 / 67):
    # at least half of that is checked in every split
    fraction = parameters["demo_data"]["cohort"]["two_view_fraction"]
    for split, n in checked.items():
        assert n >= 0.5 * fraction[split] * studies[split], (split, n, studies[split])


def test_findings_follow_the_truth_and_drains_follow_pneumothorax(plan):
    ptx = plan["truth_Pneumothorax"] == 1
    has_ptx = plan.spec_findings.str.contains("pneumothorax")
    np.testing.assert_array_equal(ptx.to_numpy(), has_ptx.to_numpy())
    eff = plan["truth_Pleural Effusion"] == 1
    assert (plan.loc[eff, "spec_findings"].str.contains("pleural_effusion")).all()
    assert not plan.loc[~eff, "spec_findings"].str.contains("pleural_effusion").any()
    devices = plan["truth_Support Devices"] == 1
    assert (plan.loc[devices, "spec_devices"] != "").all()
    assert (plan.loc[~devices, "spec_devices"] == "").all()
    drain = plan.spec_devices.str.contains("chest_drain")
    assert drain[ptx & devices].mean() > 3 * drain[~ptx & devices].mean()
    # a drain sits on the pneumothorax's side
    both = plan[drain & ptx]
    for _, row in both.iterrows():
        assert f"pneumothorax/{row.spec_drain_side}/" in row.spec_findings


def test_same_seed_same_plan_other_seed_other_plan(tiny_atlas, parameters):
    params = _cohort_params(parameters, train_images=120, valid_images=10, test_images=10)
    a = plan_cohort(tiny_atlas, params, seed=1)
    b = plan_cohort(tiny_atlas, params, seed=1)
    pd.testing.assert_frame_equal(a, b)
    c = plan_cohort(tiny_atlas, params, seed=2)
    assert not a[list(cx.OBSERVATIONS)].equals(c[list(cx.OBSERVATIONS)])


def test_spec_record_round_trip(plan):
    row = plan.iloc[3]
    spec = spec_from_record(row)
    assert spec_from_record(spec_to_record(spec)) == spec


def test_truth_table_has_every_image_and_observation(plan, tiny_atlas):
    sub = plan.groupby("split").head(40)
    truth = export.truth_table(sub, tiny_atlas)
    assert len(truth) == len(sub) * len(cx.OBSERVATIONS)
    assert set(truth.columns) >= {
        "Path",
        "observation",
        "truth",
        "csv_label",
        "rendered",
        "finding",
        "side",
        "severity",
        "lesion_area_px",
    }
    merged = truth.merge(sub, on="Path")
    for obs in cx.OBSERVATIONS:
        part = merged[merged.observation == obs]
        np.testing.assert_array_equal(part.truth.to_numpy(), part[f"truth_{obs}"].to_numpy())
    ptx = truth[(truth.observation == "Pneumothorax") & (truth.truth == 1)]
    assert (ptx.lesion_area_px > 0).all() and ptx.finding.str.startswith("pneumothorax").all()
    assert (truth[(truth.observation == "Pneumothorax") & (truth.truth == 0)].finding == "").all()


def test_label_fraction_overrides_are_validated(tiny_atlas, parameters):
    params = _cohort_params(parameters, train_images=50, valid_images=5, test_images=5)
    params["label_fractions"] = {"Pneumothorax": [0.5, 0.1, 0.1, 0.1]}
    with pytest.raises(ValueError, match="summing to 1"):
        plan_cohort(tiny_atlas, params, seed=0)
    params["label_fractions"] = {"Pneumothorax": [0.5, 0.0, 0.25, 0.25]}
    train = plan_cohort(tiny_atlas, params, seed=0).query("split == 'train'")
    assert abs((train.Pneumothorax == 1).mean() - 0.5) < 0.03
