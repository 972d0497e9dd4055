"""The declared in-memory dataset: one process (a MemoryDataset) and Kedro's ParallelRunner
(the manager's shared dataset), where a plain declared MemoryDataset loses what a worker saved."""

from __future__ import annotations

import os

import pytest
from kedro.io import DataCatalog, MemoryDataset, SharedMemoryDataCatalog
from kedro.pipeline import Node, Pipeline
from kedro.runner import ParallelRunner, SequentialRunner

from cxr_augment.datasets import ProcessMemoryDataset


def make_spec(n):
    return {"n": n, "pid": os.getpid()}


def use_spec(spec):
    return {"twice": spec["n"] * 2, "made_in": spec["pid"], "used_in": os.getpid()}


PIPE = Pipeline(
    [
        Node(make_spec, "n", "spec", name="make_spec"),
        Node(use_spec, "spec", "out", name="use_spec"),
    ]
)


def test_in_one_process_it_is_a_memory_dataset():
    ds = ProcessMemoryDataset(metadata={"description": "d"})
    assert isinstance(ds, MemoryDataset) and ds.metadata == {"description": "d"}
    assert not ds.exists()
    ds.save({"a": [1]})
    loaded = ds.load()
    assert loaded == {"a": [1]} and ds.exists()
    loaded["a"].append(2)  # a copy, as MemoryDataset's
    assert ds.load() == {"a": [1]}
    ds.release()
    assert not ds.exists()
    with pytest.raises(Exception, match="has not been saved"):
        ds.load()
    catalog = DataCatalog({"n": MemoryDataset(21), "spec": ProcessMemoryDataset()})
    out = SequentialRunner().run(PIPE, catalog)
    assert out["out"].load()["twice"] == 42


def test_parallel_runner_workers_share_it(tmp_path):
    from kedro_datasets.json import JSONDataset

    def run(spec_dataset):
        out = JSONDataset(filepath=str(tmp_path / "out.json"))
        catalog = SharedMemoryDataCatalog(
            {"n": MemoryDataset(21), "spec": spec_dataset, "out": out}
        )
        ParallelRunner(max_workers=2).run(PIPE, catalog)
        return out.load()

    out = run(ProcessMemoryDataset())
    assert out["twice"] == 42
    # the two nodes ran in worker processes, not here: the data crossed processes
    assert os.getpid() not in (out["made_in"], out["used_in"])
    # what it fixes: a declared plain MemoryDataset reaches the next worker empty
    with pytest.raises(Exception, match="not subscriptable"):
        run(MemoryDataset())
