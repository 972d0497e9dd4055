"""Ingestion from a CheXpert download: one case per kind of bad input.

Each case builds a small, sound CheXpert-format folder in ``tmp_path``, breaks one thing, and
asserts what that input gets: a fatal error (its file, row, column, rule, value, the file's
full path and the root's setting) or a quarantine / unlisted row with its reason.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.runner import SequentialRunner

from cxr_augment.datasets import ImageFolderDataset, TensorStoreDataset
from cxr_augment.datasets.atomic import CSVDataset, JSONDataset, ParquetDataset
from cxr_augment.pipelines.preprocessing import create_pipeline, nodes
from cxr_augment.preprocess import chexpert as cx
from cxr_augment.preprocess.chexpert import IngestionError
from tests.pipelines.test_preprocessing import _jpg, _write

TEXT = {"dtype": str, "keep_default_na": False}  # the catalog's load_args for the CSVs
PROJECT = Path(__file__).resolve().parents[2]
N_TRAIN = 20  # patients: odd ones have a frontal image, even ones a frontal and a lateral


# --- a sound release ----------------------------------------------------------------------------


def build_release(root: Path) -> dict[str, pd.DataFrame]:
    """A small, sound release: train (30 images), valid (3), test (2 studies, 4 images)."""
    rows = []
    for p in range(1, N_TRAIN + 1):
        for view_index, view in enumerate(["frontal", "lateral"][: 1 + (p % 2 == 0)], start=1):
            path = cx.image_path("train", p, 1, view_index, view)
            _write(root / path, _jpg(p * 10 + view_index))
            labels = [""] * len(cx.OBSERVATIONS)
            labels[cx.OBSERVATIONS.index("Pneumothorax")] = ["1.0", "0.0", "-1.0", ""][p % 4]
            labels[cx.OBSERVATIONS.index("Pleural Effusion")] = ["", "1.0"][p % 2]
            sex = cx.SEXES[p % 3]
            projection = ("AP" if p % 3 else "PA") if view == "frontal" else ""
            rows.append([path, sex, str(30 + p), view.capitalize(), projection, *labels])
    train = pd.DataFrame(rows, columns=cx.TRAIN_COLUMNS)
    vrows = []
    for p in range(cx.FIRST_PATIENT["valid"], cx.FIRST_PATIENT["valid"] + 3):
        path = cx.image_path("valid", p, 1, 1, "frontal")
        _write(root / path, _jpg(p))
        vrows.append([path, "Male", "50", "Frontal", "PA", *["0.0"] * 13, "1.0"])
    valid = pd.DataFrame(vrows, columns=cx.TRAIN_COLUMNS)
    grows = []
    for k, p in enumerate(range(cx.FIRST_PATIENT["test"], cx.FIRST_PATIENT["test"] + 2)):
        for v, view in ((1, "frontal"), (2, "lateral")):
            _write(root / cx.image_path("test", p, 1, v, view), _jpg(p + v))
        grows.append([cx.study_path("test", p, 1), *[str((k + j) % 2) for j in range(14)]])
    groundtruth = pd.DataFrame(grows, columns=cx.GROUNDTRUTH_COLUMNS)
    return {"train.csv": train, "valid.csv": valid, "groundtruth.csv": groundtruth}


def write_tables(root: Path, tables: dict, **to_csv) -> None:
    for name, table in tables.items():
        if table is not None:
            table.to_csv(root / cx.CSV_FILES[name], index=False, **to_csv)


def _dataset(root: Path, name: str) -> CSVDataset:
    return CSVDataset(filepath=str(root / cx.CSV_FILES[name]), load_args=TEXT)


def load_tables(root: Path) -> list[pd.DataFrame]:
    """The three tables as the catalog loads them (text)."""
    return [_dataset(root, name).load() for name in cx.CSV_FILES]


def params_for(parameters: dict, root: Path, show_first: int = 20) -> dict:
    p = copy.deepcopy(parameters["preprocessing"])
    p["ingestion"].update(chexpert_root=str(root), show_first=show_first)
    return p


def ingest(root: Path, parameters: dict, show_first: int = 20) -> pd.DataFrame:
    files = ImageFolderDataset(path=str(root)).load()
    return nodes.ingest_chexpert(
        *load_tables(root), files, params_for(parameters, root, show_first)
    )


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "chexpert"
    tables = build_release(root)
    write_tables(root, tables)
    return root, tables


def _train_path(p: int, view_index: int = 1, view: str = "frontal") -> str:
    return cx.image_path("train", p, 1, view_index, view)


def _row_of(tables: dict, key: str) -> int:
    """The 0-based data row of ``key`` in train.csv."""
    return int(np.flatnonzero(tables["train.csv"]["Path"].to_numpy() == key)[0])


def _set(tables: dict, file: str, i: int, column: str, value: str) -> None:
    tables[file].loc[i, column] = value


# --- fatal: the table cannot be used ------------------------------------------------------------


def _drop_edema(root, t):
    t["train.csv"] = t["train.csv"].drop(columns=["Edema"])


def _extra_column(root, t):
    t["valid.csv"] = t["valid.csv"].assign(Notes="x")


def _swap_sex_age(root, t):
    cols = list(cx.TRAIN_COLUMNS)
    cols[1], cols[2] = cols[2], cols[1]
    t["train.csv"] = t["train.csv"][cols]


def _semicolons(root, t):
    t["train.csv"].to_csv(root / cx.CSV_FILES["train.csv"], index=False, sep=";")
    t["train.csv"] = None  # already written


def _duplicate(root, t):
    _set(t, "train.csv", 3, "Path", t["train.csv"].Path[0])


def _absolute(root, t):
    _set(t, "train.csv", 1, "Path", "/data/chexpert/train/patient00002/study1/view1_frontal.jpg")


def _dotdot(root, t):
    _set(t, "train.csv", 2, "Path", "CheXpert-v1.0-small/train/../../etc/view1_frontal.jpg")


def _outside_release(root, t):
    _set(t, "train.csv", 4, "Path", "images/train/patient00004/study1/view1_frontal.jpg")


def _empty_path(root, t):
    _set(t, "train.csv", 5, "Path", "")


def _no_patient_id(root, t):
    _set(t, "train.csv", 6, "Path", "CheXpert-v1.0-small/train/patientABC/study1/view1_frontal.jpg")


def _wrong_split(root, t):
    _set(t, "train.csv", 7, "Path", cx.image_path("valid", 64541, 1, 1, "frontal"))


def _label_text(root, t):
    _set(t, "train.csv", 8, "Pneumothorax", "yes")


def _label_out_of_set(root, t):
    _set(t, "train.csv", 9, "Pleural Effusion", "2.0")


def _groundtruth_uncertain(root, t):
    _set(t, "groundtruth.csv", 1, "Edema", "-1")


def _groundtruth_study(root, t):
    _set(t, "groundtruth.csv", 0, "Study", "CheXpert-v1.0/test/patient64741")


def _train_header_only(root, t):
    t["train.csv"] = t["train.csv"].iloc[0:0]


def _valid_header_only(root, t):
    t["valid.csv"] = t["valid.csv"].iloc[0:0]


def _no_train_image(root, t):
    # a partial download (or a wrong root): train/ absent
    shutil.rmtree(root / cx.SMALL_RELEASE / "train")


FATAL = [
    # id, change, file, row (as in the file, header = 1; None: the whole file), rule, shown
    ("missing_column", _drop_edema, "train.csv", 1, "missing columns", "missing columns: Edema"),
    ("extra_column", _extra_column, "valid.csv", 1, "extra columns", "extra columns: Notes"),
    ("column_order", _swap_sex_age, "train.csv", 1, "column order", "expected Path, Sex, Age"),
    ("wrong_delimiter", _semicolons, "train.csv", 1, "delimiter", "separated by ';'"),
    ("duplicate_path", _duplicate, "train.csv", 5, "duplicate path", "(first at row 2)"),
    ("absolute_path", _absolute, "train.csv", 3, "absolute path", "Path = '/data/chexpert/"),
    ("path_with_dotdot", _dotdot, "train.csv", 4, "path escapes the root", "train/../../etc"),
    ("path_outside_release", _outside_release, "train.csv", 6, "path outside the release",
     "Path = 'images/train/patient00004"),
    ("empty_path", _empty_path, "train.csv", 7, "empty path", "Path = ''"),
    ("patient_id_unparseable", _no_patient_id, "train.csv", 8, "path pattern",
     "Path = 'CheXpert-v1.0-small/train/patientABC/study1/view1_frontal.jpg'"),
    ("path_in_another_split", _wrong_split, "train.csv", 9, "path split", "expected it under train/"),
    ("label_not_numeric", _label_text, "train.csv", 10, "label value", "Pneumothorax = 'yes'"),
    ("label_outside_set", _label_out_of_set, "train.csv", 11, "label value",
     "Pleural Effusion = '2.0' (allowed {1, 0, -1, empty})"),
    ("groundtruth_uncertain_label", _groundtruth_uncertain, "groundtruth.csv", 3, "label value",
     "Edema = '-1' (allowed {0, 1})"),
    ("groundtruth_study_unparseable", _groundtruth_study, "groundtruth.csv", 2, "study pattern",
     "Study = 'CheXpert-v1.0/test/patient64741'"),
    ("train_header_only", _train_header_only, "train.csv", None, "no data rows", "header only"),
    ("valid_header_only", _valid_header_only, "valid.csv", None, "no data rows", "header only"),
    ("no_listed_image_exists", _no_train_image, "train.csv", None, "no listed image exists",
     "none of its 30 images is under"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "file", "row", "rule", "shown"),
    [pytest.param(*case[1:], id=case[0]) for case in FATAL],
)
def test_a_table_rule_is_one_error_naming_file_row_rule_value_and_paths(
    release, parameters, change, file, row, rule, shown
):
    root, tables = release
    change(root, tables)
    write_tables(root, tables)
    with pytest.raises(IngestionError) as err:
        ingest(root, parameters)
    e, text = err.value, str(err.value)
    assert (e.file, e.row, e.rule) == (file, row, rule)
    assert e.count == 1 and len(e.violations) == 1
    where = file if row is None else f"{file}, row {row}"
    assert f"{where}: {rule}" in text
    assert shown in text
    # the file's full path and the setting that points there
    assert f"{file} = {root}/{cx.CSV_FILES[file]}" in text
    assert f"The dataset root is {root} (chexpert_root" in text and "CHEXPERT_ROOT" in text


def test_every_violation_in_one_error_in_file_order_with_count_and_first_n(release, parameters):
    """A table with many broken rows: one error, all counted, the first N in file order."""
    root, tables = release
    _set(tables, "groundtruth.csv", 0, "Edema", "2")  # groundtruth.csv, row 2
    _set(tables, "valid.csv", 2, "Age", "50")  # sound
    _set(tables, "valid.csv", 1, "Pneumothorax", "-1.0")  # valid takes any labeller value
    _set(tables, "valid.csv", 0, "Path", "/abs/view1_frontal.jpg")  # valid.csv, row 2
    for i in (12, 3, 7):  # train.csv, rows 14, 5, 9
        _set(tables, "train.csv", i, "Pneumothorax", "maybe")
    _set(tables, "train.csv", 7, "Path", "CheXpert-v1.0-small/train/p/x.jpg")  # row 9 again
    write_tables(root, tables)
    with pytest.raises(IngestionError) as err:
        ingest(root, parameters, show_first=4)
    e = err.value
    assert e.count == 6
    assert [(v.file, v.row, v.rule) for v in e.violations] == [
        ("train.csv", 5, "label value"),
        ("train.csv", 9, "label value"),
        ("train.csv", 9, "path pattern"),
        ("train.csv", 14, "label value"),
    ]
    lines = str(e).splitlines()
    assert lines[0].startswith("CheXpert ingestion: 6 rule violation(s)")
    assert (
        lines[1]
        == "  train.csv, row 5: label value: Pneumothorax = 'maybe' (allowed {1, 0, -1, empty})"
    )
    assert "  ... and 2 more" in lines
    with pytest.raises(IngestionError) as err:
        ingest(root, parameters, show_first=20)
    assert [(v.file, v.row) for v in err.value.violations][-2:] == [
        ("valid.csv", 2),
        ("groundtruth.csv", 2),
    ]


# --- quarantined: the image is held back with its reason, the run goes on ------------------------


def _quarantine(root: Path, parameters: dict, tmp_path: Path, show_first: int = 20):
    """ingest -> tensor store -> quarantine, as the pipeline runs them."""
    p = params_for(parameters, root, show_first)
    files = ImageFolderDataset(path=str(root)).load()
    manifest = nodes.ingest_chexpert(*load_tables(root), files, p)
    store_ds = TensorStoreDataset(path=str(tmp_path / "store"), save_args={"workers": 1})
    store_ds.save(nodes.build_tensor_store(manifest, files, p["images"]))
    return nodes.quarantine_images(manifest, store_ds.load(), p)


def _file(key: str, data: bytes):
    def change(r, t):
        (r / key).write_bytes(data)

    return change


def _meta(column: str, value: str, p: int = 3, view_index: int = 1, view: str = "frontal"):
    def change(root, t):
        _set(t, "train.csv", _row_of(t, _train_path(p, view_index, view)), column, value)

    return change


def _delete(key: str):
    def change(root, t):
        (root / key).unlink()

    return change


def _delete_test_study(root, t):
    for v, view in ((1, "frontal"), (2, "lateral")):
        (root / cx.image_path("test", 64742, 1, v, view)).unlink()


def _odd_name_in_test_study(root, t):
    _write(root / cx.study_path("test", 64741, 1) / "scan.jpg", _jpg(1))


P3 = _train_path(3)
QUARANTINED = [
    # id, change, key, file, row, rule, reason
    ("missing_image", _delete(P3), P3, "train.csv", 5, "missing image file", "missing image file"),
    ("zero_byte_image", _file(P3, b""), P3, "train.csv", 5, "unreadable image", "empty file"),
    ("truncated_jpeg", _file(P3, _jpg(3)[:-300]), P3, "train.csv", 5, "unreadable image",
     "truncated JPEG (no end-of-image marker)"),
    ("not_an_image_named_jpg", _file(P3, b"<html>404 Not Found</html>"), P3, "train.csv", 5,
     "unreadable image", "undecodable image"),
    ("age_not_a_number", _meta("Age", "abc"), P3, "train.csv", 5, "Age", "Age 'abc' is not a number"),
    ("age_out_of_range", _meta("Age", "130"), P3, "train.csv", 5, "Age",
     "Age 130 is outside 0-120 years"),
    ("age_negative", _meta("Age", "-4"), P3, "train.csv", 5, "Age", "Age -4 is outside 0-120 years"),
    ("age_empty", _meta("Age", ""), P3, "train.csv", 5, "Age", "Age is empty"),
    ("sex_abbreviated", _meta("Sex", "F"), P3, "train.csv", 5, "Sex",
     "Sex 'F' is not one of Male, Female, Unknown"),
    ("sex_empty", _meta("Sex", ""), P3, "train.csv", 5, "Sex",
     "Sex is empty (the release writes Unknown)"),
    ("frontal_lateral_contradicts_file_name", _meta("Frontal/Lateral", "Lateral"), P3, "train.csv",
     5, "Frontal/Lateral", "Frontal/Lateral is Lateral but the file name says frontal"),
    ("frontal_lateral_unknown_value", _meta("Frontal/Lateral", "PA view"), P3, "train.csv", 5,
     "Frontal/Lateral", "Frontal/Lateral 'PA view' is not Frontal or Lateral"),
    ("ap_pa_empty_for_frontal", _meta("AP/PA", ""), P3, "train.csv", 5, "AP/PA",
     "AP/PA is empty for a frontal image"),
    ("ap_pa_unknown_value", _meta("AP/PA", "XX"), P3, "train.csv", 5, "AP/PA",
     "AP/PA 'XX' is not one of AP, PA, LL, RL or empty"),
    ("ap_pa_given_for_lateral", _meta("AP/PA", "AP", 4, 2, "lateral"), _train_path(4, 2, "lateral"),
     "train.csv", 7, "AP/PA", "AP/PA 'AP' given for a lateral image (the release leaves it empty)"),
    ("test_study_without_images", _delete_test_study, cx.study_path("test", 64742, 1) + "/",
     "groundtruth.csv", 3, "missing image file", "no image in the study folder"),
    ("odd_file_name_in_test_study", _odd_name_in_test_study,
     cx.study_path("test", 64741, 1) + "/scan.jpg", "groundtruth.csv", 2, "file name",
     "file name is not viewN_<frontal|lateral>.jpg"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "key", "file", "row", "rule", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in QUARANTINED],
)
def test_a_row_rule_quarantines_the_image_with_its_reason(
    release, parameters, tmp_path, change, key, file, row, rule, reason
):
    root, tables = release
    change(root, tables)
    write_tables(root, tables)
    usable, quarantine = _quarantine(root, parameters, tmp_path)
    assert quarantine.columns.tolist() == nodes.QUARANTINE_COLUMNS
    assert len(quarantine) == 1
    q = quarantine.iloc[0]
    assert (q.key, q.file, q.row, q.rule, q.reason) == (key, file, row, rule, reason)
    assert key not in set(usable["key"])


def test_seventeen_missing_images_are_all_quarantined_in_one_pass(
    release, parameters, tmp_path, caplog
):
    """A partial unzip: every missing image is held back at once, the run goes on, and the
    log says how many and where the quarantine table is."""
    root, tables = release
    gone = tables["train.csv"]["Path"].iloc[5:22].tolist()
    for key in gone:
        (root / key).unlink()
    write_tables(root, tables)
    with caplog.at_level(logging.WARNING, logger=nodes.__name__):
        usable, quarantine = _quarantine(root, parameters, tmp_path, show_first=5)
    assert quarantine["key"].tolist() == gone  # in file order
    assert quarantine["row"].tolist() == list(range(7, 24))
    assert set(quarantine["reason"]) == {"missing image file"}
    assert len(usable) == 30 - 17 + 3 + 4
    log = caplog.text
    assert "17 of 37 listed images quarantined (missing image file: 17)" in log
    assert "dataset `quarantine` (data/08_reporting/preprocessing/quarantine.csv)" in log
    assert f"train.csv, row 7: {gone[0]}: missing image file" in log
    assert f"train.csv, row 11: {gone[4]}" in log and gone[5] not in log  # the first 5


def test_several_reasons_of_one_row_are_all_given(release, parameters, tmp_path):
    root, tables = release
    i = _row_of(tables, P3)
    _set(tables, "train.csv", i, "Sex", "M")
    _set(tables, "train.csv", i, "Age", "200")
    (root / P3).unlink()
    write_tables(root, tables)
    _, quarantine = _quarantine(root, parameters, tmp_path)
    q = quarantine.iloc[0]
    assert q.rule == "missing image file; Sex; Age"
    assert q.reason == (
        "missing image file; Sex 'M' is not one of Male, Female, Unknown; "
        "Age 200 is outside 0-120 years"
    )


# --- unlisted: image files no CSV lists ----------------------------------------------------------


def _extra_train_image(root, t):
    _write(root / _train_path(99), _jpg(99))


def _extra_valid_image(root, t):
    _write(root / cx.image_path("valid", 64600, 1, 1, "frontal"), _jpg(7))


def _study_absent_from_groundtruth(root, t):
    t["groundtruth.csv"] = t["groundtruth.csv"].iloc[1:]


UNLISTED = [
    ("unlisted_train_image", _extra_train_image, [_train_path(99)], "listed in no row of train.csv"),
    ("unlisted_valid_image", _extra_valid_image, [cx.image_path("valid", 64600, 1, 1, "frontal")],
     "listed in no row of valid.csv"),
    ("test_study_absent_from_groundtruth", _study_absent_from_groundtruth,
     [cx.image_path("test", 64741, 1, 1, "frontal"), cx.image_path("test", 64741, 1, 2, "lateral")],
     "test study absent from groundtruth.csv"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "keys", "reason"), [pytest.param(*case[1:], id=case[0]) for case in UNLISTED]
)
def test_an_image_no_csv_lists_is_counted_and_listed(
    release, parameters, change, keys, reason, caplog
):
    root, tables = release
    change(root, tables)
    write_tables(root, tables)
    p = params_for(parameters, root)
    files = ImageFolderDataset(path=str(root)).load()
    manifest = nodes.ingest_chexpert(*load_tables(root), files, p)
    with caplog.at_level(logging.WARNING, logger=nodes.__name__):
        unlisted = nodes.find_unlisted_images(manifest, files, p)
    assert unlisted["key"].tolist() == keys
    assert set(unlisted["reason"]) == {reason}
    assert f"{len(keys)} image file(s) that no CSV lists ({reason}: {len(keys)})" in caplog.text
    assert "data/08_reporting/preprocessing/unlisted_images.csv" in caplog.text


def test_images_outside_the_release_folders_are_not_reported(release, parameters):
    """A full-resolution train/ beside the small release is not read, so not 'unlisted'."""
    root, _ = release
    _write(root / cx.FULL_RELEASE / "train/patient00001/study1/view1_frontal.jpg", _jpg(1))
    p = params_for(parameters, root)
    files = ImageFolderDataset(path=str(root)).load()
    manifest = nodes.ingest_chexpert(*load_tables(root), files, p)
    assert nodes.find_unlisted_images(manifest, files, p).empty


# --- accepted -----------------------------------------------------------------------------------


def test_bom_and_crlf_line_endings_are_accepted(release, parameters, tmp_path):
    root, tables = release
    clean = ingest(root, parameters)
    write_tables(root, tables, encoding="utf-8-sig", lineterminator="\r\n")
    assert (root / cx.CSV_FILES["train.csv"]).read_bytes().startswith(b"\xef\xbb\xbfPath,")
    assert b"\r\n" in (root / cx.CSV_FILES["valid.csv"]).read_bytes()
    pd.testing.assert_frame_equal(ingest(root, parameters), clean)
    assert (clean["quarantine_reason"] == "").all()


def test_decubitus_frontals_and_unknown_sex_are_accepted(release, parameters):
    """LL / RL for a frontal and Sex Unknown are release values, not errors."""
    root, tables = release
    _set(tables, "train.csv", 0, "AP/PA", "LL")
    _set(tables, "train.csv", 3, "AP/PA", "RL")
    _set(tables, "train.csv", 5, "Sex", "Unknown")
    _set(tables, "train.csv", 6, "Age", "0")
    write_tables(root, tables)
    assert (ingest(root, parameters)["quarantine_reason"] == "").all()


# --- the pipeline: stops at ingestion; counts after the quarantine -----------------------------


def _catalog(root: Path, out: Path, parameters: dict) -> DataCatalog:
    p = params_for(parameters, root)
    return DataCatalog(
        {
            "chexpert_train_csv": _dataset(root, "train.csv"),
            "chexpert_valid_csv": _dataset(root, "valid.csv"),
            "chexpert_groundtruth_csv": _dataset(root, "groundtruth.csv"),
            "chexpert_images": ImageFolderDataset(path=str(root)),
            "chexpert_truth": MemoryDataset(None),
            "params:preprocessing": MemoryDataset(p),
            **{f"params:preprocessing.{k}": MemoryDataset(p[k]) for k in p},
            "tensor_store": TensorStoreDataset(path=str(out / "store"), save_args={"workers": 1}),
            "manifest": ParquetDataset(filepath=str(out / "manifest.parquet")),
            "split_table": ParquetDataset(filepath=str(out / "split_table.parquet")),
            "quarantine": CSVDataset(filepath=str(out / "quarantine.csv")),
            "unlisted_images": CSVDataset(filepath=str(out / "unlisted.csv")),
            "label_distribution_table": CSVDataset(filepath=str(out / "tables67.csv")),
            "preprocessing_report": JSONDataset(filepath=str(out / "report.json")),
        }
    )


@pytest.mark.parametrize(
    "content",
    [b"", (",".join(cx.TRAIN_COLUMNS) + "\n").encode()],
    ids=["zero_bytes", "header_only"],
)
def test_an_empty_train_csv_stops_at_ingestion_naming_its_full_path(
    release, parameters, tmp_path, content
):
    root, _ = release
    train = root / cx.CSV_FILES["train.csv"]
    train.write_bytes(content)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IngestionError if content else DatasetError) as err:
        SequentialRunner().run(create_pipeline(), _catalog(root, out, parameters))
    assert str(train) in str(err.value)
    if content:
        assert "train.csv: no data rows" in str(err.value) and "CHEXPERT_ROOT" in str(err.value)
    else:  # pandas cannot read a header from zero bytes: the catalog's load fails, naming it
        assert "No columns to parse from file" in str(err.value)
    assert list(out.iterdir()) == []  # nothing written


def _cell_count(cell: str) -> int:
    return int(re.match(r"(\d+) ", cell).group(1))


def test_split_table_and_tables_6_7_count_only_the_images_used(release, parameters, tmp_path):
    """Quarantined images (missing, undecodable, bad metadata) are in neither the split nor
    the split table nor Tables 6 and 7; unlisted ones are counted in the report."""
    root, tables = release
    (root / _train_path(1)).unlink()  # patient 1's only image: the patient disappears
    (root / _train_path(5)).write_bytes(b"")  # patient 5's only image
    _set(tables, "train.csv", _row_of(tables, _train_path(7)), "Sex", "W")  # patient 7
    _extra_train_image(root, tables)
    write_tables(root, tables)
    out = tmp_path / "out"
    out.mkdir()
    SequentialRunner().run(create_pipeline(), _catalog(root, out, parameters))
    quarantine = pd.read_csv(out / "quarantine.csv")
    held = set(quarantine["key"])
    assert held == {_train_path(1), _train_path(5), _train_path(7)}
    manifest = pd.read_parquet(out / "manifest.parquet")
    split_table = pd.read_parquet(out / "split_table.parquet")
    assert not held & set(manifest["key"])
    assert not {1, 5, 7} & set(split_table["patient_id"])
    assert split_table["images"].sum() == len(manifest) == 37 - 3
    t67 = pd.read_csv(out / "tables67.csv", keep_default_na=False)
    original = t67[t67["method"] == "Original"].iloc[0]
    counted = sum(
        _cell_count(original[c]) for c in ("positive", "negative", "uncertain", "not_mentioned")
    )
    assert counted == (manifest["source"] == "train").sum() == 30 - 3
    report = json.loads((out / "report.json").read_text())
    assert report["images_listed"] == 37
    assert report["images_quarantined"] == 3
    assert report["images_listed"] == report["images_stored"] + report["images_quarantined"]
    assert report["quarantine_rules"] == {"missing image file": 1, "unreadable image": 1, "Sex": 1}
    assert report["images_unlisted"] == 1
    assert report["unlisted_first"] == [f"{_train_path(99)}: listed in no row of train.csv"]
    assert pd.read_csv(out / "unlisted.csv")["key"].tolist() == [_train_path(99)]


def test_the_log_paths_are_the_catalogs():
    """The tables the log names are where the catalog writes them."""
    catalog = yaml.safe_load((PROJECT / "conf/base/catalog_preprocessing.yml").read_text())
    params = yaml.safe_load((PROJECT / "conf/base/parameters_preprocessing.yml").read_text())
    ingestion = params["preprocessing"]["ingestion"]
    assert ingestion["quarantine_table"] == catalog["quarantine"]["filepath"]
    assert ingestion["unlisted_table"] == catalog["unlisted_images"]["filepath"]
