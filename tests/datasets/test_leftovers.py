"""What a save killed mid-way leaves behind (a partial file, a staging folder, the previous
version moved aside) is removed by the next save of the same target, and only that: a save
still going on, in another live process or on another machine, is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxr_augment import leftovers
from cxr_augment.datasets import ImageFolderDataset, TensorStoreDataset, atomic
from cxr_augment.preprocess.tensor_store import StoreWrite

ROOT = Path(__file__).resolve().parents[2]


def _ended_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def alive():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p.pid
    p.kill()
    p.wait()


def _name(base: str, kind: str, pid: int, host: str | None = None, suffix: str = "") -> str:
    return f".{base}.{kind}-{host or leftovers._HOST}p{pid}-0123abcd{suffix}"


def test_owned_names_say_the_machine_and_process(tmp_path):
    name = leftovers.owned_name("table", "partial", ".csv")
    assert name.startswith(f".table.partial-{leftovers._HOST}p{os.getpid()}-") and name.endswith(
        ".csv"
    )
    assert leftovers._OWNED.fullmatch(name[len(".table") : -len(".csv")])
    assert atomic.partial_path(Path("/a/t.csv")).name.startswith(f".t.partial-{leftovers._HOST}p")


def test_only_the_leftovers_of_ended_writers_of_that_target_go(tmp_path, alive):
    dead = _ended_pid()
    names = {
        "dead": _name("t", "partial", dead, suffix=".csv"),
        "live": _name("t", "partial", alive, suffix=".csv"),
        "mine": _name("t", "partial", os.getpid(), suffix=".csv"),
        "other machine": _name("t", "partial", dead, host="ffffffff", suffix=".csv"),
        "other target": _name("t2", "partial", dead, suffix=".csv"),
        "other suffix": _name("t", "partial", dead, suffix=".json"),
        "other kind": _name("t", "staging", dead, suffix=".csv"),
        "earlier format": ".t.partial-0123abcd.csv",
    }
    for n in names.values():
        (tmp_path / n).write_text("half")
    removed = leftovers.remove_leftovers(tmp_path, "t", ("partial",), ".csv")
    assert [p.name for p in removed] == [names["dead"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        v for k, v in names.items() if k != "dead"
    )
    assert leftovers.remove_leftovers(tmp_path / "missing", "t", ("partial",)) == []


def test_a_csv_save_removes_a_killed_saves_partial_file(tmp_path, alive):
    dead = _ended_pid()
    (tmp_path / _name("t", "partial", dead, suffix=".csv")).write_text("a\n1\n")
    kept = tmp_path / _name("t", "partial", alive, suffix=".csv")
    kept.write_text("a\n2\n")
    atomic.CSVDataset(filepath=str(tmp_path / "t.csv"), save_args={"index": False}).save(
        pd.DataFrame({"a": [3]})
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([kept.name, "t.csv"])
    assert (tmp_path / "t.csv").read_text() == "a\n3\n"


def _job(n: int, fingerprint: str) -> StoreWrite:
    return StoreWrite([f"k{i}" for i in range(n)], lambda i: np.full((4, 5), i, np.uint8),
                      (4, 5), fingerprint)  # fmt: skip


def test_a_store_save_removes_staging_and_moved_aside_folders_of_ended_writers(tmp_path, alive):
    dead = _ended_pid()
    for n in (_name("s", "staging", dead), _name("s", "old", dead)):
        (tmp_path / n).mkdir()
        (tmp_path / n / "shard_00000.npy").write_bytes(b"half")
    live = tmp_path / _name("s", "staging", alive)
    live.mkdir()
    TensorStoreDataset(path=str(tmp_path / "s")).save(_job(3, "f"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "s"])
    assert TensorStoreDataset(path=str(tmp_path / "s")).load()[2].max() == 2


def test_a_store_write_killed_mid_way_leaves_a_staging_folder_the_next_write_removes(tmp_path):
    """The real thing: a process writing a store is killed (SIGKILL) mid-write."""
    code = textwrap.dedent(f"""
        import time, numpy as np
        from cxr_augment.datasets import TensorStoreDataset
        from cxr_augment.preprocess.tensor_store import StoreWrite
        def produce(i):
            if i == 2:
                time.sleep(60)
            return np.full((4, 5), i, np.uint8)
        TensorStoreDataset(path={str(tmp_path / "s")!r}, save_args={{"chunk": 1}}).save(
            StoreWrite(["a", "b", "c", "d"], produce, (4, 5), "f"))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.monotonic() + 120
    staged = []
    while not staged and time.monotonic() < deadline and proc.poll() is None:
        staged = [p for p in tmp_path.glob(".s.staging-*") if (p / "shard_00000.npy").exists()]
        time.sleep(0.1)
    assert staged, "the writer did not start its staging folder"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [p.name for p in tmp_path.iterdir()] == [staged[0].name]  # what the kill left
    assert f"p{proc.pid}-" in staged[0].name
    TensorStoreDataset(path=str(tmp_path / "s")).save(_job(4, "g"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_an_image_folder_save_removes_a_killed_saves_staging_and_moved_aside_subtrees(tmp_path):
    dead = _ended_pid()
    root = tmp_path / "images"
    ds = ImageFolderDataset(path=str(root), swap_depth=1)
    ds.save({"train/p1/v1.png": np.zeros((4, 4), np.uint8)})
    left = [root / _name("images", "staging", dead), root / _name("train", "old", dead)]
    for p in left:
        (p / "p0").mkdir(parents=True)
        (p / "p0" / "v1.png").write_bytes(b"half")
    assert sorted(ds.load()) == ["train/p1/v1.png"]  # hidden folders are never listed
    ds.save({"train/p2/v1.png": np.full((4, 4), 7, np.uint8)})
    assert sorted(p.name for p in root.iterdir()) == ["train"]
    assert sorted(ImageFolderDataset(path=str(root)).load()) == ["train/p2/v1.png"]


def test_a_model_save_removes_a_killed_saves_partial_file_and_its_own_on_failure(tmp_path):
    import torch

    from cxr_augment.datasets import TorchStateDictDataset

    (tmp_path / _name("model.pt", "partial", _ended_pid())).write_bytes(b"half")
    ds = TorchStateDictDataset(filepath=str(tmp_path / "model.pt"))
    ds.save({"w": torch.arange(3.0)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    with pytest.raises(Exception, match="Can't pickle|cannot pickle"):
        ds.save({"w": lambda: 0})  # a failing serialiser: the previous model stays, nothing else
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert torch.equal(ds.load()["w"], torch.arange(3.0))


def test_a_saved_model_has_the_same_bytes_whoever_saves_it(tmp_path):
    # torch names the archive inside a .pt file after the file it writes: the partial file's
    # owner tag (process, random id) must not reach the bytes, and the archive is named as the
    # models saved before the tag was there (".model.pt/"), so those compare equal too
    import zipfile

    import torch

    from cxr_augment.datasets import TorchStateDictDataset

    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(2)}
    paths = [tmp_path / f"{i}" / "model.pt" for i in range(2)]
    for path in paths:
        TorchStateDictDataset(filepath=str(path)).save(state)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    names = zipfile.ZipFile(paths[0]).namelist()
    assert names and all(n.startswith(".model.pt/") for n in names)


@pytest.mark.parametrize(
    "module", ["cxr_augment.preprocess.tensor_store", "cxr_augment.pipelines.generation"]
)
def test_the_writers_import_first_in_a_fresh_interpreter(module):
    """The stores and the datasets share the leftover rules without importing each other."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
