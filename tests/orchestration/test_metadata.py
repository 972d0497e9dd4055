"""Materialisation metadata: tables, stores, figures."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from kedro_datasets.pandas import CSVDataset, ParquetDataset  # noqa: E402

from cxr_augment.orchestration.metadata import PREVIEW_ROWS, _safe, dataset_metadata  # noqa: E402


def test_small_table_gets_rows_columns_and_a_markdown_preview(tmp_path):
    ds = CSVDataset(filepath=str(tmp_path / "t.csv"), save_args={"index": False})
    ds.save(pd.DataFrame({"experiment": ["a", "b"], "auc": [0.5, 0.75]}))
    meta = dataset_metadata(ds)
    assert meta["dagster/row_count"].value == 2
    assert [c.name for c in meta["dagster/column_schema"].value.columns] == ["experiment", "auc"]
    text = meta["preview"].value
    assert "| experiment" in text and "0.75" in text


def test_large_parquet_gets_counts_from_its_footer_and_no_preview(tmp_path):
    ds = ParquetDataset(filepath=str(tmp_path / "m.parquet"))
    ds.save(pd.DataFrame({"k": range(PREVIEW_ROWS + 5), "v": 1.0}))
    meta = dataset_metadata(ds)
    assert meta["dagster/row_count"].value == PREVIEW_ROWS + 5
    assert "preview" not in meta
    assert meta["bytes"].value == (tmp_path / "m.parquet").stat().st_size


def test_a_figure_is_embedded_and_a_store_counts_its_images(tmp_path):
    from kedro_datasets.matplotlib import MatplotlibDataset

    fig = plt.figure(figsize=(1, 1))
    MatplotlibDataset(filepath=str(tmp_path / "f.png")).save(fig)
    meta = dataset_metadata(MatplotlibDataset(filepath=str(tmp_path / "f.png")))
    assert meta["figure"].value.startswith("![f.png](data:image/png;base64,iVBOR")

    class Store:
        def _describe(self):
            return {"path": str(tmp_path / "store")}

    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "meta.json").write_text(json.dumps({"count": 7, "shape": [1, 8, 8]}))
    assert dataset_metadata(Store())["images"].value == 7


def test_metadata_never_fails_the_materialisation(tmp_path):
    class Broken:
        def _describe(self):
            return {"filepath": str(tmp_path / "x.parquet")}

    (tmp_path / "x.parquet").write_text("not parquet")
    assert "metadata_error" in _safe(Broken())
    from kedro.io import MemoryDataset

    assert _safe(MemoryDataset(1)) == {}  # nothing on disk, nothing to show


def test_a_report_counts_the_assets_it_shows_and_what_did_not_run(tmp_path):
    from cxr_augment.datasets.atomic import TextDataset
    from cxr_augment.report.html import Figure, NotRun, Section, Table, figure_png, render

    fig = plt.figure(figsize=(1, 1))
    frame = pd.DataFrame({"experiment": ["a", "b"], "auc": [0.5, 0.75]})
    items = [
        Table("t1", "Table 1", frame, asset="demo_label_distribution"),
        Table("t1b", "Table 1 again", frame, asset="demo_label_distribution"),
        Figure("f21", "Figure 21", figure_png(fig), asset="report.mask.roc"),
        NotRun("t8", "Table 8", "report.label_policy.table", "kedro run --pipelines x"),
        NotRun("t9", "Table 9", "report.classifier.table", "kedro run --pipelines x"),
    ]
    page = render("report", [Section("s", "S", items=items)], {"commit": "abc"})
    ds = TextDataset(filepath=str(tmp_path / "report.html"))
    ds.save(page)
    meta = dataset_metadata(ds)
    assert meta["assets_shown"].value == 2  # a table's cells name its asset too: counted once
    assert meta["items_not_run"].value == 2
    assert meta["shown"].value == "- `demo_label_distribution`\n- `report.mask.roc`"
    assert meta["bytes"].value == len(page.encode())
