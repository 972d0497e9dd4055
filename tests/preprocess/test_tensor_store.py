"""The tensor store: round trip, quarantine, parallel writes, reuse, torch access."""

import pickle
import time

import numpy as np
import pandas as pd
import pytest

from cxr_augment.datasets import TensorStoreDataset
from cxr_augment.preprocess.imaging import DecodeError
from cxr_augment.preprocess.tensor_store import StoreWrite, TensorStore, torch_dataset


def _job(n=50, fingerprint="v1", bad=()):
    keys = [f"img/{i:04d}.jpg" for i in range(n)]

    def produce(i):
        if i in bad:
            raise DecodeError(f"broken {i}")
        return np.full((6, 5), i % 256, np.uint8) + np.arange(5, dtype=np.uint8)

    return StoreWrite(keys, produce, (6, 5), fingerprint)


def test_round_trip_with_random_access_across_shards(tmp_path):
    ds = TensorStoreDataset(path=str(tmp_path / "s"), save_args={"shard_size": 16, "chunk": 7})
    job = _job()
    ds.save(job)
    store = ds.load()
    assert len(store) == 50 and store.shape == (6, 5)
    assert len(list((tmp_path / "s").glob("shard_*.npy"))) == 4
    for i in (0, 15, 16, 49, 31):
        np.testing.assert_array_equal(store.get(job.keys[i]), job.produce(i))
    rows = store.rows_of([job.keys[3], job.keys[40]])
    np.testing.assert_array_equal(store.batch(rows)[1], job.produce(40))
    with pytest.raises(KeyError, match="not in the tensor store"):
        store.rows_of(["nope.jpg"])


def test_undecodable_images_go_to_quarantine_with_their_reason(tmp_path):
    ds = TensorStoreDataset(path=str(tmp_path / "s"))
    ds.save(_job(10, bad={2, 7}))
    store = ds.load()
    assert len(store) == 8
    assert store.quarantine.to_dict("records") == [
        {"key": "img/0002.jpg", "reason": "broken 2"},
        {"key": "img/0007.jpg", "reason": "broken 7"},
    ]
    np.testing.assert_array_equal(store.get("img/0008.jpg"), _job().produce(8))


def test_two_workers_write_the_same_store(tmp_path):
    one = TensorStoreDataset(path=str(tmp_path / "one"), save_args={"chunk": 4})
    two = TensorStoreDataset(path=str(tmp_path / "two"), save_args={"chunk": 4, "workers": 2})
    one.save(_job(40))
    two.save(_job(40))
    a, b = one.load(), two.load()
    np.testing.assert_array_equal(a.batch(range(40)), b.batch(range(40)))
    assert a.index.equals(b.index)


def test_unchanged_inputs_reuse_the_store_and_changed_ones_rewrite_it(tmp_path):
    ds = TensorStoreDataset(path=str(tmp_path / "s"))
    ds.save(_job(fingerprint="v1"))
    meta = tmp_path / "s" / "meta.json"
    first = meta.stat().st_mtime_ns
    time.sleep(0.01)
    ds.save(_job(fingerprint="v1"))
    assert meta.stat().st_mtime_ns == first
    ds.save(_job(20, fingerprint="v2"))
    assert meta.stat().st_mtime_ns != first and len(ds.load()) == 20
    assert not list(tmp_path.glob(".s.*"))  # no staging or old folder left


def test_a_failing_producer_leaves_the_old_store(tmp_path):
    ds = TensorStoreDataset(path=str(tmp_path / "s"))
    ds.save(_job(5, fingerprint="v1"))

    def boom(i):
        raise RuntimeError("disk on fire")

    with pytest.raises(Exception, match="disk on fire"):
        ds.save(StoreWrite(["a"], boom, (6, 5), "v2"))
    assert ds.load().fingerprint == "v1"
    assert not list(tmp_path.glob(".s.*"))


def test_wrong_shape_is_an_error_naming_the_key(tmp_path):
    bad = StoreWrite(["x/y.jpg"], lambda i: np.zeros((3, 3), np.uint8), (6, 5), "f")
    with pytest.raises(Exception, match="x/y.jpg"):
        TensorStoreDataset(path=str(tmp_path / "s")).save(bad)


def test_torch_dataset_and_pickling(tmp_path):
    ds = TensorStoreDataset(path=str(tmp_path / "s"))
    job = _job(12)
    ds.save(job)
    store = ds.load()
    store[0]  # open a shard, then pickle (as DataLoader workers do)
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone[5], store[5])
    tds = torch_dataset(store, job.keys[::-1], targets=np.arange(12, dtype=float))
    x, y = tds[0]
    assert tuple(x.shape) == (1, 6, 5) and float(y) == 0.0
    assert float(x.max()) == pytest.approx(job.produce(11).max() / 255.0)
    assert len(tds) == 12


def test_missing_store_says_which_pipeline_makes_it(tmp_path):
    from kedro.io.core import DatasetError

    with pytest.raises(DatasetError, match="preprocessing"):
        TensorStoreDataset(path=str(tmp_path / "none")).load()
    with pytest.raises(FileNotFoundError):
        TensorStore(tmp_path)


def test_an_empty_quarantine_keeps_its_text_columns(tmp_path):
    ds = TensorStoreDataset(path=str(tmp_path / "s"))
    ds.save(_job(3))
    q = ds.load().quarantine
    assert len(q) == 0 and str(q["key"].dtype) in ("string", "str", "object")
    assert q.merge(pd.DataFrame({"key": ["a"]}), on="key").empty
