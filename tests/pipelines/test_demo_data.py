"""The demo_data pipeline on a tiny size: layout, schema, determinism by seed."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import cv2
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset, ParquetDataset

from cxr_augment.datasets import ImageFolderDataset
from cxr_augment.pipelines.demo_data import create_pipeline
from cxr_augment.preprocess import chexpert as cx

SIZES = {"train_images": 24, "valid_images": 6, "test_images": 5}
TEXT = {"dtype": str, "keep_default_na": False}


def _run(root: Path, atlas, parameters, seed: int) -> Path:
    p = copy.deepcopy(parameters["demo_data"])
    p["sizes"] = SIZES
    p["seed"] = seed
    data = root / "chexpert_demo"
    catalog = DataCatalog(
        {
            "demo_projection_atlas": MemoryDataset(atlas, copy_mode="assign"),
            "params:demo_data": MemoryDataset(p),
            "params:demo_data.image": MemoryDataset(p["image"]),
            "params:demo_data.contact_sheet": MemoryDataset(p["contact_sheet"]),
            "demo_render_plan": ParquetDataset(filepath=str(root / "plan.parquet")),
            "chexpert_train_csv": CSVDataset(
                filepath=str(data / "CheXpert-v1.0-small/train.csv"),
                load_args=TEXT,
                save_args={"index": False},
            ),
            "chexpert_valid_csv": CSVDataset(
                filepath=str(data / "CheXpert-v1.0-small/valid.csv"),
                load_args=TEXT,
                save_args={"index": False},
            ),
            "chexpert_groundtruth_csv": CSVDataset(
                filepath=str(data / "groundtruth.csv"), load_args=TEXT, save_args={"index": False}
            ),
            "chexpert_truth": ParquetDataset(filepath=str(data / "truth.parquet")),
            "chexpert_images": ImageFolderDataset(path=str(data), save_args={"workers": 2}),
            "demo_label_distribution": CSVDataset(filepath=str(root / "labels.csv")),
            "demo_contact_sheet": MatplotlibDataset(filepath=str(root / "sheet.png")),
        }
    )
    pipeline = create_pipeline().from_nodes("plan_demo_cohort")
    SequentialRunner().run(pipeline, catalog)
    return data


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file() and f.suffix in (".jpg", ".csv")
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_atlas, parameters):
    a = _run(tmp_path_factory.mktemp("a"), tiny_atlas, parameters, seed=3)
    b = _run(tmp_path_factory.mktemp("b"), tiny_atlas, parameters, seed=3)
    c = _run(tmp_path_factory.mktemp("c"), tiny_atlas, parameters, seed=4)
    return a, b, c


def test_folder_layout_is_chexpert(runs):
    root = runs[0]
    train = pd.read_csv(root / "CheXpert-v1.0-small/train.csv", keep_default_na=False, dtype=str)
    valid = pd.read_csv(root / "CheXpert-v1.0-small/valid.csv", keep_default_na=False, dtype=str)
    gt = pd.read_csv(root / "groundtruth.csv", dtype=str)
    assert tuple(train.columns) == cx.TRAIN_COLUMNS == tuple(valid.columns)
    assert tuple(gt.columns) == cx.GROUNDTRUTH_COLUMNS
    assert len(train) == SIZES["train_images"] and len(valid) == SIZES["valid_images"]
    jpgs = {str(p.relative_to(root)) for p in root.rglob("*.jpg")}
    assert jpgs == set(train.Path) | set(valid.Path) | {
        p for p in jpgs if p.startswith("CheXpert-v1.0/test/")
    }
    test_images = [p for p in jpgs if p.startswith("CheXpert-v1.0/test/")]
    assert len(test_images) == SIZES["test_images"]
    # every test image's study is a groundtruth row
    assert {p.rsplit("/", 1)[0] for p in test_images} == set(gt.Study)
    for path in list(train.Path[:3]) + test_images[:2]:
        img = cv2.imread(str(root / path), cv2.IMREAD_UNCHANGED)
        assert img.shape == (390, 320) and img.dtype == "uint8"
    assert (root / "truth.parquet").exists()
    assert not list(root.glob(".staging-*"))


def test_same_seed_same_bytes(runs):
    a, b, c = runs
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert len(da) == SIZES["train_images"] + SIZES["valid_images"] + SIZES["test_images"] + 3
    assert da == db
    assert da != dc
