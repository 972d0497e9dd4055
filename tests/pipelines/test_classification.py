"""Two tiny experiments and their group report through Kedro."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset, ParquetDataset
from kedro_datasets.text import TextDataset

from cxr_augment.chexpert import OBSERVATIONS
from cxr_augment.datasets import CheckpointFolderDataset, TorchStateDictDataset
from cxr_augment.pipelines.classification.pipeline import build
from cxr_augment.tensor_store import StoreWrite, TensorStore, write_store

DEFAULTS = {
    "observation": "Pneumothorax",
    "policy": "nm0_uones",
    "view": "combined",
    "mask": "none",
    "model": {"name": "tiny_densenet", "outputs": 1, "drop_rate": 0.0, "pretrained_path": None},
    "train": {
        "epochs": 2,
        "batch_size": 16,
        "lr": 0.003,
        "loss": "bce",
        "patience": 3,
        "seed": 1,
        "device": "cpu",
        "num_workers": 0,
        "progress": False,
    },
    "evaluate": {"bootstrap": 30, "seed": 2},
}


def synthetic(tmp_path, n=240):
    """A manifest and store: positives carry a bright square; labels have NM / uncertain."""
    rng = np.random.default_rng(0)
    truth = (rng.random(n) < 0.3).astype(int)
    images = rng.integers(0, 90, (n, 40, 32)).astype(np.uint8)
    images[truth == 1, 5:15, 5:12] += 110
    keys = [f"CheXpert-v1.0-small/train/patient{i:05d}/study1/view1_frontal.jpg" for i in range(n)]
    write_store(tmp_path / "store", StoreWrite(keys, lambda i: images[i], (40, 32), "syn"))
    split = np.array(["train"] * 150 + ["internal_test"] * 30 + ["validation"] * 30 + ["test"] * 30)
    raw = truth.astype(float)
    noisy = rng.random(n)
    raw[(split == "train") & (noisy < 0.1)] = -1.0
    raw[(split == "train") & (noisy > 0.85) & (truth == 0)] = np.nan
    manifest = pd.DataFrame(
        {
            "key": keys,
            "patient_id": np.arange(n) // 2,
            "split": split,
            "view": np.where(np.arange(n) % 4 == 3, "lateral", "frontal"),
            "store_row": np.arange(n),
            "Pneumothorax": raw,
            "Pleural Effusion": truth.astype(float),
        }
    )
    for obs in OBSERVATIONS:
        if obs not in manifest:
            manifest[obs] = np.nan
    return manifest, TensorStore(tmp_path / "store")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cls")
    manifest, store = synthetic(tmp)
    experiments = {
        "a": {},
        "b": {"policy": "nm0_uzeros"},
        "c": {
            "policy": "nm0_umulticlass",
            "model": {"outputs": 3},
            "train": {"loss": "multiclass"},
        },
    }
    groups = {
        "g": {
            "title": "Tiny table",
            "split": "validation",
            "reference": {"Pneumothorax": "a"},
            "experiments": ["a", "b", "c"],
        },
        "t": {
            "title": "With truth",
            "split": "validation",
            "truth_agreement": True,
            "experiments": ["a", "b"],
        },
    }
    agreement = pd.DataFrame(
        {
            "observation": ["Pneumothorax", "Pneumothorax"],
            "policy": ["FillNM(0) U-Ones", "FillNM(0) U-Zeros"],
            "accuracy": [0.9, 0.8],
            "implied_positive_rate": [0.31, 0.25],
            "true_positive_rate": [0.3, 0.3],
        }
    )
    data = {
        "policy_truth_agreement": MemoryDataset(agreement),
        "params:study.groups.t": MemoryDataset(groups["t"]),
        "manifest": MemoryDataset(manifest),
        "tensor_store": MemoryDataset(store, copy_mode="assign"),
        "params:study.defaults": MemoryDataset(DEFAULTS),
        "params:preprocessing.masks": MemoryDataset({}),
        "params:study.groups.g": MemoryDataset(groups["g"]),
    }
    for name, over in experiments.items():
        data[f"params:study.experiments.{name}"] = MemoryDataset(over)
        data[f"{name}.model"] = TorchStateDictDataset(filepath=str(tmp / name / "model.pt"))
        data[f"{name}.checkpoints"] = CheckpointFolderDataset(path=str(tmp / name / "ck"))
        data[f"{name}.predictions"] = ParquetDataset(filepath=str(tmp / name / "pred.parquet"))
        data[f"{name}.metrics"] = CSVDataset(filepath=str(tmp / name / "metrics.csv"))
    data["report.g.table"] = CSVDataset(filepath=str(tmp / "g.csv"))
    data["report.g.markdown"] = TextDataset(filepath=str(tmp / "g.md"))
    data["report.t.table"] = CSVDataset(filepath=str(tmp / "t.csv"))
    catalog = DataCatalog(data)
    pipe = build(list(experiments), groups, pca_reference=None)
    SequentialRunner().run(pipe, catalog)
    return catalog, tmp


def test_each_experiment_writes_a_model_predictions_and_metrics(run):
    catalog, tmp = run
    for name in "abc":
        assert (tmp / name / "model.pt").exists()
        assert list((tmp / name / "ck").rglob("epoch_*.pt"))
        pred = catalog.load(f"{name}.predictions")
        assert set(pred.split) == {"validation", "test", "internal_test"}
        assert pred.prob.between(0, 1).all()
        m = catalog.load(f"{name}.metrics")
        assert set(m.metric) == {
            "accuracy",
            "precision",
            "recall",
            "f1",
            "roc_auc",
            "pr_auc",
            "kappa",
        }
        assert (m.ci_low <= m.value + 1e-12).all() and (m.value <= m.ci_high + 1e-12).all()
        assert m.threshold.nunique() == 1  # chosen on validation, applied everywhere


def test_the_signal_is_learned(run):
    catalog, _ = run
    m = catalog.load("a.metrics")
    auc = m[(m.split == "test") & (m.metric == "roc_auc")].value.iloc[0]
    assert auc > 0.8


def test_group_table_compares_against_the_reference(run):
    catalog, tmp = run
    table = catalog.load("report.g.table")
    assert table.experiment.tolist() == ["a", "b", "c"]
    ref = table.set_index("experiment")
    assert np.isnan(ref.loc["a", "mcnemar_p"])
    for e in ("b", "c"):
        assert 0 <= ref.loc[e, "mcnemar_p"] <= 1 and 0 <= ref.loc[e, "delong_p"] <= 1
        assert ref.loc[e, "paired_images"] == 30
    md = catalog.load("report.g.markdown")
    assert md.startswith("# Tiny table") and "| a " in md
    assert (tmp / "g.md").exists()


def test_a_truth_group_lists_each_policys_agreement_with_the_truth(run):
    catalog, _ = run
    table = catalog.load("report.t.table").set_index("experiment")
    from cxr_augment.labels import parse_policy

    assert table.loc["a", "policy"] == parse_policy("nm0_uones").name
    assert table.loc["b", "policy"] == parse_policy("nm0_uzeros").name
    md = catalog.load("report.t.markdown")
    assert "against the truth" in md
    assert table.loc["a", "label_truth_accuracy"] == 0.9
    assert table.loc["b", "label_positive_rate"] == 0.25
    assert table.loc["b", "true_positive_rate"] == 0.3


def test_an_augmented_experiment_trains_on_real_plus_generated_images(tmp_path):
    from cxr_augment.datasets import TensorStoreDataset

    manifest, store = synthetic(tmp_path)
    over = {
        "augmentation": {"methods": ["rotation", "flipping"], "strategy": "unbalanced", "seed": 4}
    }
    data = {
        "manifest": MemoryDataset(manifest),
        "tensor_store": MemoryDataset(store, copy_mode="assign"),
        "params:study.defaults": MemoryDataset(
            {**DEFAULTS, "train": {**DEFAULTS["train"], "epochs": 1}}
        ),
        "params:preprocessing.masks": MemoryDataset({}),
        "params:study.experiments.aug": MemoryDataset(over),
        "aug.model": TorchStateDictDataset(filepath=str(tmp_path / "m.pt")),
        "aug.checkpoints": CheckpointFolderDataset(path=str(tmp_path / "ck")),
        "aug.augmented_store": TensorStoreDataset(path=str(tmp_path / "aug_store")),
        "aug.augmented_manifest": ParquetDataset(filepath=str(tmp_path / "aug.parquet")),
        "aug.augmentation_counts": CSVDataset(filepath=str(tmp_path / "counts.csv")),
        "aug.training_history": CSVDataset(filepath=str(tmp_path / "hist.csv")),
    }
    catalog = DataCatalog(data)
    SequentialRunner().run(build(["aug"], {}, None, augmented={"aug"}), catalog)
    rows = pd.read_parquet(tmp_path / "aug.parquet")
    train = manifest[(manifest.split == "train")]
    positives = int((train.Pneumothorax.isin([1.0, -1.0])).sum())  # FillNM(0) + U-Ones
    negatives = len(train) - positives
    assert len(rows) == 11 * positives + negatives // 3  # thesis Table 4's arithmetic
    assert set(rows.origin) == {"augmentation"} and rows.parent_key.isin(train.key).all()
    assert rows.params.str.contains('"rotation"').all()
    aug_store = catalog.load("aug.augmented_store")
    assert len(aug_store) == len(rows)
    parent = store.get(rows.parent_key.iloc[0])
    assert not np.array_equal(aug_store.get(rows.key.iloc[0]), parent)
    counts = pd.read_csv(tmp_path / "counts.csv").set_index("class")
    assert counts.loc["Positive", "generated_images"] == 11 * positives
