"""An augmented set's manifest records the coins and parameters, and renders from them."""

import json

import numpy as np
import pandas as pd

from cxr_augment.augment import sets
from cxr_augment.augment import transforms as tf
from cxr_augment.preprocess.tensor_store import StoreWrite, TensorStore, write_store

SHAPE = (40, 32)
FIVE = ["rotation", "shearing", "flipping", "noise", "blurring"]


def _store(tmp_path, n=6):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, SHAPE, dtype=np.uint8) for _ in range(n)]
    keys = [f"k{i}" for i in range(n)]
    write_store(tmp_path / "store", StoreWrite(keys, lambda i: images[i], SHAPE, "syn"))
    train = pd.DataFrame(
        {"key": keys, "patient_id": keys, "view": "frontal", "target": [1.0, 0.0] * (n // 2)}
    )
    selection = train[["key", "target"]].assign(copies=5)
    return TensorStore(tmp_path / "store"), train, selection


def _plan(train, selection, methods, settings=None, seed=7):
    return sets.plan(train, selection, methods, settings or {}, seed, SHAPE, prefix="aug/x")


def _render(rows, store, methods, settings=None):
    job = sets.job(rows, store, methods, settings or {})
    return [job.produce(i) for i in range(len(rows))]


def test_a_composed_row_names_the_methods_that_fired_and_their_parameters(tmp_path):
    store, train, selection = _store(tmp_path)
    rows = _plan(train, selection, FIVE)
    assert len(rows) == 30 and (rows["method"] == "+".join(FIVE)).all()
    for r in rows.itertuples():
        params = json.loads(r.params)
        fired = [m for m in FIVE if params[m]["applied"]]
        assert r.applied == "+".join(fired) and fired  # at least one, in order
        for m in FIVE:
            assert (len(params[m]) > 1) == params[m]["applied"]  # parameters only if fired
    counts = rows["applied"].str.split("+").explode().value_counts()
    assert set(counts.index) == set(FIVE) and counts.max() < 30


def test_same_seed_same_rows_and_bytes_and_the_rows_render_what_they_say(tmp_path):
    store, train, selection = _store(tmp_path)
    a, b = _plan(train, selection, FIVE), _plan(train, selection, FIVE)
    pd.testing.assert_frame_equal(a, b)
    ia, ib = _render(a, store, FIVE), _render(b, store, FIVE)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(ia, ib, strict=True))
    assert not a.equals(_plan(train, selection, FIVE, seed=8))
    compose = tf.build(FIVE)
    for i, r in enumerate(a.itertuples()):
        expected = compose.apply(store.get(r.parent_key), json.loads(r.params))
        np.testing.assert_array_equal(ia[i], expected)
        assert not np.array_equal(ia[i], store.get(r.parent_key))


def test_a_single_method_fires_on_every_image(tmp_path):
    store, train, selection = _store(tmp_path)
    rows = _plan(train, selection, ["rotation"])
    assert (rows["applied"] == "rotation").all()
    assert all("degrees" in json.loads(p)["rotation"] for p in rows["params"])


def test_every_method_every_time_is_a_setting(tmp_path):
    store, train, selection = _store(tmp_path)
    rows = _plan(train, selection, FIVE, {"compose": {"p": 1.0}})
    assert (rows["applied"] == "+".join(FIVE)).all()
