"""What Dagster shows for a materialisation: row counts, columns and a Markdown preview of a
table, the image count of a tensor store, a figure itself, the assets a report shows and the
items it marks "not run", the file it was written to.

kedro-dagster attaches ``dataset_metadata(dataset)`` after each save (``translate`` puts it in
place of kedro-dagster's raw JSON preview). It reads only what is cheap: a Parquet footer, a
small file, a store's ``meta.json``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import dagster as dg

from cxr_augment.orchestration.versions import dataset_path

PREVIEW_ROWS = 20  # a table of at most this many rows is shown whole, in Markdown
SMALL_FILE = 2_000_000  # bytes: a CSV read in full, a figure embedded


def _table_metadata(frame, path: Path) -> dict[str, dg.MetadataValue]:
    out: dict[str, dg.MetadataValue] = {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": dg.MetadataValue.table_schema(
            dg.TableSchema(
                columns=[dg.TableColumn(str(c), str(t)) for c, t in frame.dtypes.items()]
            )
        ),
    }
    if len(frame) <= PREVIEW_ROWS:
        out["preview"] = dg.MetadataValue.md(frame.to_markdown(index=False))
    return out


def _parquet(path: Path) -> dict[str, dg.MetadataValue]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path)
    rows = meta.metadata.num_rows
    out: dict[str, dg.MetadataValue] = {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/column_schema": dg.MetadataValue.table_schema(
            dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in meta.schema_arrow])
        ),
    }
    if rows <= PREVIEW_ROWS:
        out["preview"] = dg.MetadataValue.md(meta.read().to_pandas().to_markdown(index=False))
    return out


def dataset_metadata(dataset) -> dict[str, dg.MetadataValue]:
    """Metadata of the saved dataset (empty when it has no file)."""
    import pandas as pd

    where = dataset_path(dataset)
    if where is None or "://" in where:
        return {}
    path = Path(where)
    if not path.exists():
        return {}
    out: dict[str, dg.MetadataValue] = {"path": dg.MetadataValue.path(str(path))}
    if path.is_dir():
        meta = path / "meta.json"
        if meta.is_file():  # a tensor store
            info = json.loads(meta.read_text())
            out["images"] = dg.MetadataValue.int(int(info.get("count", 0)))
            out["image_shape"] = dg.MetadataValue.text(str(info.get("shape")))
        else:
            out["files"] = dg.MetadataValue.int(sum(1 for p in path.rglob("*") if p.is_file()))
        return out
    size = path.stat().st_size
    out["bytes"] = dg.MetadataValue.int(size)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        out |= _parquet(path)
    elif suffix == ".csv" and size <= SMALL_FILE:
        out |= _table_metadata(pd.read_csv(path), path)
    elif suffix == ".png" and size <= SMALL_FILE:
        data = base64.b64encode(path.read_bytes()).decode()
        out["figure"] = dg.MetadataValue.md(f"![{path.name}](data:image/png;base64,{data})")
    elif suffix == ".md" and size <= SMALL_FILE:
        out["preview"] = dg.MetadataValue.md(path.read_text())
    elif suffix == ".json" and size <= SMALL_FILE:
        out["content"] = dg.MetadataValue.json(json.loads(path.read_text()))
    elif suffix == ".html":
        out |= _report_metadata(path.read_text(encoding="utf-8", errors="replace"))
    return out


def _report_metadata(page: str) -> dict[str, dg.MetadataValue]:
    """The report's items: the assets its tables and figures show (each element that shows
    one names it in ``data-asset``) and the items it marks "not run"."""
    import re

    shown = sorted(set(re.findall(r'<(?:table|figure)\b[^>]*\bdata-asset="([^"]+)"', page)))
    not_run = len(re.findall(r'class="item not-run"', page))
    out = {
        "assets_shown": dg.MetadataValue.int(len(shown)),
        "items_not_run": dg.MetadataValue.int(not_run),
    }
    if shown:
        out["shown"] = dg.MetadataValue.md("\n".join(f"- `{a}`" for a in shown))
    return out


def _safe(dataset) -> dict[str, dg.MetadataValue]:
    try:
        return dataset_metadata(dataset)
    except Exception as err:  # metadata never fails a materialisation
        return {"metadata_error": dg.MetadataValue.text(f"{type(err).__name__}: {err}")}


def install() -> None:
    """Make kedro-dagster attach ``dataset_metadata`` after each save."""
    from kedro_dagster import catalog as kd_catalog

    kd_catalog._get_dataset_preview_metadata = _safe
