"""Comparing two runs' outputs file by file (orchestration/compare.py, scripts/compare_outputs.py)."""

from __future__ import annotations

import filecmp
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from cxr_augment.orchestration.compare import compare_outputs, json_differences, same_bytes

ROOT = Path(__file__).resolve().parents[2]


def _write(root: Path, rel: str, data) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture
def two_runs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    rng = np.random.default_rng(3)
    shard = rng.integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()  # over one read chunk
    flipped = bytearray(shard)
    flipped[-1] ^= 1
    for root in (a, b):
        _write(root, "05_model_input/store/shard_00000.npy", shard)
        _write(root, "06_models/e/seed1/model.pt", b"weights")
    # the same store, rendered at another time: only the inputs' identity differs
    meta = {"shape": [4, 4], "fingerprint": "f-a", "nested": {"store_fingerprint": "s-a"}}
    _write(a, "05_model_input/store/meta.json", meta)
    _write(b, "05_model_input/store/meta.json",
           {**meta, "fingerprint": "f-b", "nested": {"store_fingerprint": "s-b"}})  # fmt: skip
    _write(a, "08_reporting/metrics.json", {"auc": [0.81, 0.7], "n": 10, "fingerprint": "x"})
    _write(b, "08_reporting/metrics.json", {"auc": [0.81, 0.71], "n": 10, "fingerprint": "y"})
    # a JSON file cut short in one run: a difference that says why, not taken as equal
    _write(a, "08_reporting/cut.json", {"n": 1})
    _write(b, "08_reporting/cut.json", b'{"n": ')
    _write(a, "05_model_input/other/shard_00000.npy", shard)
    _write(b, "05_model_input/other/shard_00000.npy", bytes(flipped))
    # a training's resumable state differs between runs and is not an output
    _write(a, "06_models/e/seed1/checkpoints/stage0/epoch_0000.pt", b"one")
    _write(b, "06_models/e/seed1/checkpoints/stage0/epoch_0000.pt", b"two")
    _write(a, "06_models/generation_checkpoints/grey/0/step_00000239.pt", b"one")
    _write(b, "06_models/generation_checkpoints/grey/0/step_00000239.pt", b"two")
    _write(a, "07_model_output/e/seed2/predictions.parquet", b"only a")
    _write(b, "07_model_output/e/seed3/predictions.parquet", b"only b")
    return a, b


def test_each_file_is_classified(two_runs):
    a, b = two_runs
    res = compare_outputs(a, b)
    assert res["identical"] == [
        "05_model_input/store/shard_00000.npy",
        "06_models/e/seed1/model.pt",
    ]
    assert res["identical_but_inputs"] == {
        "05_model_input/store/meta.json": ["fingerprint", "nested.store_fingerprint"]
    }
    assert res["different"] == {
        "05_model_input/other/shard_00000.npy": ["bytes"],
        "08_reporting/cut.json": [
            "b: cut.json is not JSON: Expecting value: line 1 column 7 (char 6)"
        ],
        "08_reporting/metrics.json": ["auc[1]"],
    }
    assert res["only_a"] == ["07_model_output/e/seed2/predictions.parquet"]
    assert res["only_b"] == ["07_model_output/e/seed3/predictions.parquet"]
    every = {*res["identical"], *res["identical_but_inputs"], *res["different"],
             *res["only_a"], *res["only_b"]}  # fmt: skip
    assert not any("checkpoints" in rel for rel in every)
    # with nothing skipped, the differing checkpoints are counted too
    assert {
        "06_models/e/seed1/checkpoints/stage0/epoch_0000.pt",
        "06_models/generation_checkpoints/grey/0/step_00000239.pt",
    } <= set(compare_outputs(a, b, skip=())["different"])


def test_same_bytes_agrees_with_filecmp(two_runs):
    a, b = two_runs
    for rel in ("05_model_input/store/shard_00000.npy", "05_model_input/other/shard_00000.npy",
                "05_model_input/store/meta.json", "06_models/e/seed1/model.pt"):  # fmt: skip
        assert same_bytes(a / rel, b / rel) == filecmp.cmp(a / rel, b / rel, shallow=False)


def test_json_differences():
    assert json_differences({"a": 1, "b": [1, {"c": 2}]}, {"a": 1, "b": [1, {"c": 3}]}) == [
        "b[1].c"
    ]
    assert json_differences({"a": 1}, {"a": 1, "z": 0}) == ["z"]
    assert json_differences([1, 2], [1]) == ["[len]"]
    assert json_differences({"fingerprint": 1}, {"fingerprint": 2}, ("fingerprint",)) == []
    assert json_differences(1.0, 1.0) == [] and json_differences("x", "y") == ["(value)"]


def test_the_script_prints_and_fails_on_a_difference(two_runs, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "compare_outputs", ROOT / "scripts/compare_outputs.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    a, b = two_runs
    out_json = tmp_path / "cmp.json"
    assert script.main([str(a), str(b), "--json", str(out_json)]) == 1
    text = capsys.readouterr().out
    assert "identical: 2 files" in text
    assert "different: 3 files" in text and "auc[1]" in text
    assert json.loads(out_json.read_text())["only_b"] == [
        "07_model_output/e/seed3/predictions.parquet"
    ]
    # the same run against itself: nothing differs
    assert script.main([str(a), str(a)]) == 0
    assert script.main([str(a), str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err
