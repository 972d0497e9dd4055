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


# --- data versions: what was saved, by its bytes ---------------------------------------------


def _versioned_defs(tmp_path, code_a: str, value: int):
    """a -> b, each saved by a DatasetIOManager to a JSON file; ``a``'s code version and
    value given."""
    import dagster as dg
    from kedro_datasets.json import JSONDataset

    @dg.asset(code_version=code_a, io_manager_key="a_io")
    def a():
        return {"v": value}

    @dg.asset(code_version="1", io_manager_key="b_io")
    def b(a):
        return {"w": a["v"] + 1}

    def manager(name):
        dataset = JSONDataset(filepath=str(tmp_path / f"{name}.json"))
        made = DatasetIOManager(dataset, name, {}, SimpleNamespace(hook=Hooks()))
        return dg.IOManagerDefinition.hardcoded_io_manager(made)

    return [a, b], {"a_io": manager("a"), "b_io": manager("b")}


def test_an_asset_made_again_with_the_same_bytes_leaves_its_readers_up_to_date(tmp_path):
    """Dagster's data version of a saved asset is its bytes' digest: ``a`` materialised again
    under a new code version with the same bytes leaves ``b`` fresh (Dagster's own version,
    code and inputs hashed, would have made it stale); other bytes make ``b`` stale."""
    import dagster as dg
    from dagster._core.definitions.data_version import StaleStatus

    from cxr_augment.orchestration.resume import statuses
    from cxr_augment.orchestration.versions import content_digest

    def status(assets):
        graph = dg.Definitions(assets=assets, resources=resources).resolve_asset_graph()
        return {k.to_user_string(): s for k, s in statuses(instance, graph).items()}

    with dg.instance_for_test() as instance:
        assets, resources = _versioned_defs(tmp_path, "1", 3)
        dg.materialize(assets, instance=instance, resources=resources)
        event = instance.get_latest_materialization_event(dg.AssetKey("a"))
        tags = event.asset_materialization.tags
        assert tags["dagster/data_version"] == "c" + content_digest(tmp_path / "a.json")
        assert status(assets) == {"a": StaleStatus.FRESH, "b": StaleStatus.FRESH}

        assets, resources = _versioned_defs(tmp_path, "2", 3)  # new code, same output
        assert status(assets)["a"] == StaleStatus.STALE
        dg.materialize(assets, instance=instance, resources=resources, selection=["a"])
        assert status(assets) == {"a": StaleStatus.FRESH, "b": StaleStatus.FRESH}

        assets, resources = _versioned_defs(tmp_path, "3", 4)  # new code, other bytes
        dg.materialize(assets, instance=instance, resources=resources, selection=["a"])
        assert status(assets) == {"a": StaleStatus.FRESH, "b": StaleStatus.STALE}


def test_content_digest_reads_a_file_or_a_folder_by_bytes_and_names(tmp_path):
    import os

    from cxr_augment.orchestration.versions import content_digest

    folder = tmp_path / "store"
    (folder / "shards").mkdir(parents=True)
    (folder / "meta.json").write_text("{}")
    (folder / "shards" / "0.bin").write_bytes(b"\x00\x01")
    first = content_digest(folder)
    os.utime(folder / "meta.json", ns=(0, 10**9))  # a time alone changes nothing
    assert content_digest(folder) == first
    (folder / "shards" / "0.bin").write_bytes(b"\x00\x02")  # a byte
    second = content_digest(folder)
    (folder / "shards" / "0.bin").rename(folder / "shards" / "1.bin")  # a name
    assert len({first, second, content_digest(folder)}) == 3
    assert content_digest(folder, limit=3) is None  # more bytes than the limit: not read
    assert content_digest(tmp_path / "missing") is None
    assert content_digest(folder / "meta.json") != content_digest(folder)


def test_an_in_memory_value_made_again_the_same_leaves_its_readers_up_to_date(tmp_path):
    """The default IO manager (the in-memory datasets: an experiment's settings) pickles the
    value under the instance's storage and versions it by the value itself."""
    import dagster as dg
    from dagster._core.definitions.data_version import StaleStatus

    from cxr_augment.orchestration.io_managers import ValueFilesystemIOManager
    from cxr_augment.orchestration.resume import statuses
    from cxr_augment.orchestration.runner import value_digest

    def defs(code: str, lr: float):
        @dg.asset(code_version=code)
        def spec():
            return {"lr": lr, "epochs": 2}

        @dg.asset(code_version="1")
        def model(spec):
            return spec["lr"] * 10

        return dg.Definitions(assets=[spec, model], resources={"io_manager": manager})

    def status(d):
        graph = d.resolve_asset_graph()
        return {k.to_user_string(): s for k, s in statuses(instance, graph).items()}

    manager = ValueFilesystemIOManager(base_dir=str(tmp_path / "storage"))
    with dg.instance_for_test() as instance:
        first = defs("1", 0.1)
        dg.materialize(first.assets, instance=instance, resources=first.resources)
        tags = instance.get_latest_materialization_event(dg.AssetKey("spec")).tags
        assert tags["dagster/data_version"] == "v" + value_digest({"lr": 0.1, "epochs": 2})
        again = defs("2", 0.1)
        dg.materialize(again.assets, instance=instance, resources=again.resources,
                       selection=["spec"])  # fmt: skip
        assert set(status(again).values()) == {StaleStatus.FRESH}
        other = defs("3", 0.2)
        dg.materialize(other.assets, instance=instance, resources=other.resources,
                       selection=["spec"])  # fmt: skip
        assert status(other)["model"] == StaleStatus.STALE
        # the value is where Dagster's own filesystem IO manager keeps it
        assert (tmp_path / "storage" / "spec").is_file()
