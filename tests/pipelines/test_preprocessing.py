"""The preprocessing pipeline on a hand-made CheXpert-format folder with bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import CSVDataset, ParquetDataset

from cxr_augment.datasets import ImageFolderDataset, TensorStoreDataset
from cxr_augment.pipelines.preprocessing import create_pipeline, nodes
from cxr_augment.preprocess import chexpert as cx
from cxr_augment.preprocess.chexpert import ChexpertFormatError

TEXT = {"dtype": str, "keep_default_na": False}


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _jpg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (120, 100), np.uint8), (9, 9), 3)
    return cv2.imencode(".jpg", img)[1].tobytes()


def make_chexpert(root: Path, n_train_patients: int = 10) -> dict:
    """A small release: train (2 views for even patients), valid, test; some bad images."""
    rng = np.random.default_rng(0)
    rows = []
    for p in range(1, n_train_patients + 1):
        for view_index, view in enumerate(["frontal", "lateral"][: 1 + (p % 2 == 0)], start=1):
            path = cx.image_path("train", p, 1, view_index, view)
            _write(root / path, _jpg(p * 10 + view_index))
            labels = ["" for _ in cx.OBSERVATIONS]
            labels[cx.OBSERVATIONS.index("Pneumothorax")] = ["1.0", "0.0", "-1.0", ""][p % 4]
            labels[cx.OBSERVATIONS.index("Pleural Effusion")] = ["", "1.0"][p % 2]
            rows.append(
                [
                    path,
                    "Female",
                    str(40 + p),
                    view.capitalize(),
                    "AP" if view == "frontal" else "",
                    *labels,
                ]
            )
    train = pd.DataFrame(rows, columns=cx.TRAIN_COLUMNS)
    vrows = []
    for p in range(cx.FIRST_PATIENT["valid"], cx.FIRST_PATIENT["valid"] + 3):
        path = cx.image_path("valid", p, 1, 1, "frontal")
        _write(root / path, _jpg(p))
        vrows.append([path, "Male", "50", "Frontal", "PA", *["0.0"] * 13, "1.0"])
    valid = pd.DataFrame(vrows, columns=cx.TRAIN_COLUMNS)
    grows = []
    for p in range(cx.FIRST_PATIENT["test"], cx.FIRST_PATIENT["test"] + 2):
        for v in (1, 2):
            _write(
                root / cx.image_path("test", p, 1, v, "frontal" if v == 1 else "lateral"),
                _jpg(p + v),
            )
        grows.append(
            [cx.study_path("test", p, 1), *[str(int(rng.integers(0, 2))) for _ in cx.OBSERVATIONS]]
        )
    gt = pd.DataFrame(grows, columns=cx.GROUNDTRUTH_COLUMNS)
    # the bad and the odd: stored under valid .jpg names, as a broken download would be
    bad = {
        cx.image_path("train", 3, 1, 1, "frontal"): b"",  # empty
        cx.image_path("train", 5, 1, 1, "frontal"): _jpg(5)[:-300],  # truncated
    }
    for path, data in bad.items():
        _write(root / path, data)
    rgb = np.dstack([np.full((50, 40), 100, np.uint8)] * 3)
    _write(
        root / cx.image_path("train", 7, 1, 1, "frontal"), cv2.imencode(".png", rgb)[1].tobytes()
    )
    deep = np.full((50, 40), 257 * 200, np.uint16)
    _write(
        root / cx.image_path("train", 9, 1, 1, "frontal"), cv2.imencode(".png", deep)[1].tobytes()
    )
    return {"train": train, "valid": valid, "groundtruth": gt}


def _catalog(root: Path, out: Path, tables: dict, params: dict) -> DataCatalog:
    return DataCatalog(
        {
            "chexpert_train_csv": MemoryDataset(tables["train"]),
            "chexpert_valid_csv": MemoryDataset(tables["valid"]),
            "chexpert_groundtruth_csv": MemoryDataset(tables["groundtruth"]),
            "chexpert_images": ImageFolderDataset(path=str(root)),
            "chexpert_truth": MemoryDataset(None),
            "params:preprocessing": MemoryDataset(params),
            "params:preprocessing.labels": MemoryDataset(params["labels"]),
            "params:preprocessing.split": MemoryDataset(params["split"]),
            "params:preprocessing.images": MemoryDataset(params["images"]),
            "params:preprocessing.masks": MemoryDataset(params["masks"]),
            "tensor_store": TensorStoreDataset(
                path=str(out / "store"), save_args={"workers": 2, "chunk": 4}
            ),
            "manifest": ParquetDataset(filepath=str(out / "manifest.parquet")),
            "quarantine": CSVDataset(filepath=str(out / "quarantine.csv")),
            "preprocessing_report": JSONDataset(filepath=str(out / "report.json")),
        }
    )


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("chexpert")
    return root, make_chexpert(root)


@pytest.fixture(scope="module")
def run(release, tmp_path_factory, parameters):
    root, tables = release
    out = tmp_path_factory.mktemp("out")
    catalog = _catalog(root, out, tables, parameters["preprocessing"])
    SequentialRunner().run(create_pipeline(), catalog)
    return out, catalog


def test_bad_images_are_quarantined_with_reasons_and_counted(run):
    out, catalog = run
    quarantine = pd.read_csv(out / "quarantine.csv")
    reasons = dict(zip(quarantine.key, quarantine.reason, strict=True))
    assert reasons == {
        cx.image_path("train", 3, 1, 1, "frontal"): "empty file",
        cx.image_path("train", 5, 1, 1, "frontal"): "truncated JPEG (no end-of-image marker)",
    }
    report = json.loads((out / "report.json").read_text())
    assert report["images_listed"] == report["images_stored"] + report["images_quarantined"]
    assert report["images_quarantined"] == 2
    assert report["quarantine_reasons"] == {
        "empty file": 1,
        "truncated JPEG (no end-of-image marker)": 1,
    }


def test_manifest_splits_targets_and_store_rows(run, parameters):
    out, catalog = run
    manifest = pd.read_parquet(out / "manifest.parquet")
    store = catalog.load("tensor_store")
    assert set(manifest.split) == {"train", "internal_test", "validation", "test"}
    assert (manifest.loc[manifest.source == "valid", "split"] == "validation").all()
    assert (manifest.loc[manifest.source == "test", "split"] == "test").all()
    assert manifest.groupby("patient_id").split.nunique().max() == 1
    # groundtruth studies expand to every image in their folder
    assert (manifest.source == "test").sum() == 4
    # targets under FillNM(0) U-Ones
    ptx = manifest.set_index("key")["target_pneumothorax"]
    raw = manifest.set_index("key")["Pneumothorax"]
    assert (ptx[raw == -1] == 1).all() and (ptx[raw.isna()] == 0).all()
    # RGB and 16-bit images were converted by rule, and the store holds them at the set size
    h, w = parameters["preprocessing"]["images"]["size"]
    assert store.shape == (h, w)
    rgb = store.get(cx.image_path("train", 7, 1, 1, "frontal"))
    assert np.all(np.abs(rgb.astype(int) - 100) <= 1)
    deep = store.get(cx.image_path("train", 9, 1, 1, "frontal"))
    assert np.all(deep == 200)
    rows = manifest.store_row.to_numpy()
    np.testing.assert_array_equal(store.rows_of(manifest.key), rows)


def test_rerun_with_unchanged_inputs_reuses_the_store(run, release, parameters):
    out, catalog = run
    meta = out / "store" / "meta.json"
    before = meta.stat().st_mtime_ns
    SequentialRunner().run(
        create_pipeline(), _catalog(release[0], out, release[1], parameters["preprocessing"])
    )
    assert meta.stat().st_mtime_ns == before


def _ingest(release, **changes):
    root, tables = release
    tables = {k: v.copy() for k, v in tables.items()}
    for name, fn in changes.items():
        tables[name] = fn(tables[name])
    files = ImageFolderDataset(path=str(root)).load()
    return nodes.ingest_chexpert(tables["train"], tables["valid"], tables["groundtruth"], files)


@pytest.mark.parametrize(
    ("change", "file", "row", "rule"),
    [
        ({"train": lambda t: t.drop(columns=["Edema"])}, "train.csv", 1, "missing columns"),
        ({"valid": lambda t: t.assign(Extra="x")}, "valid.csv", 1, "extra columns"),
        (
            {
                "train": lambda t: t.assign(
                    **{"Pneumothorax": ["2.0"] + list(t["Pneumothorax"][1:])}
                )
            },
            "train.csv",
            2,
            "label value",
        ),
        (
            {"groundtruth": lambda t: t.assign(Edema=["-1"] + list(t["Edema"][1:]))},
            "groundtruth.csv",
            2,
            "label value",
        ),
        (
            {
                "train": lambda t: t.assign(
                    Path=list(t.Path[:3]) + ["/abs/x.jpg"] + list(t.Path[4:])
                )
            },
            "train.csv",
            5,
            "absolute path",
        ),
        (
            {
                "train": lambda t: t.assign(
                    Path=list(t.Path[:2])
                    + ["CheXpert-v1.0-small/train/../../etc/x.jpg"]
                    + list(t.Path[3:])
                )
            },
            "train.csv",
            4,
            "path escapes the root",
        ),
        (
            {"train": lambda t: t.assign(Path=list(t.Path[:1]) + [t.Path[0]] + list(t.Path[2:]))},
            "train.csv",
            3,
            "duplicate path",
        ),
    ],
)
def test_each_table_rule_names_file_row_and_rule(release, change, file, row, rule):
    # (a missing image is quarantined, not an error: tests/preprocess/test_ingestion_errors.py)
    with pytest.raises(ChexpertFormatError) as err:
        _ingest(release, **change)
    assert (err.value.file, err.value.row, err.value.rule) == (file, row, rule)
    assert f"{file}, row {row}: {rule}" in str(err.value)


def test_valid_tables_ingest(release):
    manifest = _ingest(release)
    assert len(manifest) == 15 + 3 + 4
    assert set(manifest.columns) >= {
        "key",
        "source",
        "patient_id",
        "study_id",
        "view",
        *cx.OBSERVATIONS,
    }
