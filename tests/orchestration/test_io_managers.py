"""The one IO manager class of the translation: it saves and loads through its Kedro dataset,
runs Kedro's dataset hooks around a node's op, honours partitions and attaches the metadata."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from cxr_augment.orchestration.io_managers import DatasetIOManager


class Hooks:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda **kw: self.calls.append((name, kw.get("dataset_name"), kw.get("node")))


def _context(op: str, tags: dict | None = None, partition: str | None = None):
    added: dict = {}
    return SimpleNamespace(
        op_def=SimpleNamespace(name=op, tags=tags or {}),
        has_asset_partitions=partition is not None,
        asset_partition_key=partition,
        add_output_metadata=added.update,
        added=added,
    )


@pytest.fixture
def csv(tmp_path):
    from kedro_datasets.pandas import CSVDataset

    return CSVDataset(filepath=str(tmp_path / "t.csv"))


def test_a_nodes_output_is_saved_with_hooks_and_metadata_then_loaded(csv, tmp_path):
    hooks = Hooks()
    node = object()
    manager = DatasetIOManager(csv, "exp.table", {"make_table": node}, SimpleNamespace(hook=hooks))
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    out = _context("make_table")
    manager.handle_output(out, frame)
    assert (tmp_path / "t.csv").exists()
    assert hooks.calls == [
        ("before_dataset_saved", "exp.table", node),
        ("after_dataset_saved", "exp.table", node),
    ]
    # the project's materialisation metadata (orchestration/metadata.py) once installed
    from cxr_augment.orchestration import metadata

    metadata.install()
    manager.handle_output(_context("make_table"), frame)
    added = _context("make_table")
    manager.handle_output(added, frame)
    assert added.added["dagster/row_count"].value == 3

    hooks.calls.clear()
    loaded = manager.load_input(_context("make_table"))
    pd.testing.assert_frame_equal(loaded, frame)
    assert [c[0] for c in hooks.calls] == ["before_dataset_loaded", "after_dataset_loaded"]

    # an asset's op (kedro-dagster names it <node>_asset) is the same node: the same hooks
    hooks.calls.clear()
    manager.handle_output(_context("make_table_asset"), frame)
    manager.load_input(_context("make_table_asset"))
    assert hooks.calls == [
        ("before_dataset_saved", "exp.table", node),
        ("after_dataset_saved", "exp.table", node),
        ("before_dataset_loaded", "exp.table", node),
        ("after_dataset_loaded", "exp.table", node),
    ]

    # an op that is not a Kedro node (an asset check, say): no hooks
    hooks.calls.clear()
    pd.testing.assert_frame_equal(manager.load_input(_context("a_check")), frame)
    assert hooks.calls == []


def test_partitions_select_the_partition_and_a_mismatch_is_an_error(tmp_path):
    store: dict = {}

    class Dataset:
        def save(self, data):
            store.update(data)

        def load(self):
            return dict(store)

    manager = DatasetIOManager(Dataset(), "parts", {}, SimpleNamespace(hook=Hooks()))
    manager.handle_output(_context("n", partition="p1"), {"p1": 1})
    manager.handle_output(_context("n", tags={"downstream_partition_key": "parts|p2"}), {"p2": 2})
    assert store == {"p1": 1, "p2": 2}
    assert manager.load_input(_context("n", partition="p2")) == {"p2": 2}
    assert manager.load_input(_context("n", tags={"upstream_partition_key": "parts|p1"})) == {
        "p1": 1
    }
    # the tag of another asset leaves this one whole
    assert manager.load_input(_context("n", tags={"upstream_partition_key": "other|p1"})) == store
    with pytest.raises(ValueError, match="downstream partition"):
        manager.handle_output(_context("n", partition="p3"), {"p1": 1})
