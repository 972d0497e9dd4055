"""Faults in training: kill -9 then resume, a full disk during a checkpoint write, corrupted
checkpoints. The trainings are the tiny ones of ``scripts/kill_resume.py`` (which runs the
kill check at 10 points each); on CPU with one thread."""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import sys
from pathlib import Path

import pytest
import torch

from cxr_augment.classify import checkpoints as classify_training
from cxr_augment.classify.training import CheckpointError, CheckpointStore

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("kill_resume", ROOT / "scripts/kill_resume.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_resume"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


kr = _load_script()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # the children train with one thread: the parent's runs do too (same kernels, same bytes)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_REFERENCES: dict = {}


def reference(training: str) -> dict:
    if training not in _REFERENCES:
        _REFERENCES[training] = kr.reference(training)
    return _REFERENCES[training]


def assert_same(ref: dict, out: dict) -> None:
    assert ref["weights"].keys() == out["weights"].keys()
    for k, a in ref["weights"].items():
        assert torch.equal(a, out["weights"][k]), k
    assert out["history"] == ref["history"]


# --- kill -9 ----------------------------------------------------------------------------------

# three points per training, their steps and saves drawn from the seed: the kill lands in a
# training step or inside a checkpoint save (half-written, written but not renamed, renamed
# but the old ones not yet deleted)
KILL_KINDS = {"classifier": ("async", "rename", "prune"), "diffusion": ("step", "write", "rename")}


@pytest.mark.parametrize(
    "training,i", [(t, i) for t in ("classifier", "diffusion") for i in range(3)]
)
def test_kill_9_then_resume_gives_the_same_weights(training, i, tmp_path):
    ref = reference(training)
    point = kr.draw_points(training, 3, 12, ref, KILL_KINDS[training])[i]
    folder = tmp_path / "ck"
    row = kr.kill_and_resume(point, folder, ref)
    assert row["killed"], row  # by SIGKILL, before the run finished
    assert row["returncode"] == -9
    assert row["identical"], row["differing_tensors"]
    assert row["leftovers"] == [] and kr.leftovers(tmp_path) == []
    if point.kind in ("write", "rename"):  # the kill left a partial file; the resume removed it
        assert any(".partial-" in name for name in row["files_after_kill"]), row
    if training == "classifier" and point.kind == "prune":
        assert row["resumed_from"] == point.index - 1  # epoch n - 1 is the n-th save


def test_leftover_partial_files_are_removed_on_resume(tmp_path):
    store = CheckpointStore(tmp_path, stem="step", digits=8)
    store.save(1, {"x": torch.zeros(2)})
    (tmp_path / ".step_00000002.partial-0123abcd.pt").write_bytes(b"half")
    (tmp_path / ".tmp-89abcdef.pt").write_bytes(b"half")  # an earlier version's name
    path, state = store.resume()
    assert path.name == "step_00000001.pt" and torch.equal(state["x"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000001.pt"]


# --- a full disk ------------------------------------------------------------------------------


class FillingFile:
    """A file on a disk that is full after ``room`` more bytes."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, b) -> int:
        if len(b) > self.room:
            self.f.write(bytes(b)[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b)
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _full_disk_after(monkeypatch, room: int) -> None:
    def open_(path, mode="r", *args, **kwargs):
        return FillingFile(open(path, mode, *args, **kwargs), room)

    # the store's ``open`` (a module global shadows the builtin)
    monkeypatch.setattr(classify_training, "open", open_, raising=False)


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_full_disk_during_a_checkpoint_save_is_a_clear_error(where, tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path / "ck")
    store.save(0, {"w": torch.arange(4.0)})
    before = (tmp_path / "ck" / "epoch_0000.pt").read_bytes()
    if where == "write":  # the disk fills during the write
        _full_disk_after(monkeypatch, 1000)
    else:  # reported at the flush to the disk (delayed allocation, network filesystems)

        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(classify_training.os, "fsync", fsync)
    with pytest.raises(OSError, match="the disk is full") as info:
        store.save(1, {"w": torch.zeros(10_000)})
    monkeypatch.undo()
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert str(tmp_path / "ck" / "epoch_0001.pt") in message
    assert f"the previous checkpoint, {tmp_path / 'ck' / 'epoch_0000.pt'}, is intact" in message
    # the previous checkpoint intact, nothing half-written left, and it is what resumes
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["epoch_0000.pt"]
    assert (tmp_path / "ck" / "epoch_0000.pt").read_bytes() == before
    assert torch.equal(store.latest()["w"], torch.arange(4.0))


def test_training_stopped_by_a_full_disk_resumes_to_the_same_weights(tmp_path, monkeypatch):
    ref = reference("classifier")
    saves = {"n": 0}
    real = CheckpointStore._write

    def write(self, tmp, state):
        saves["n"] += 1
        if saves["n"] == 3:  # the third checkpoint finds the disk full
            _full_disk_after(monkeypatch, 5000)
        real(self, tmp, state)

    monkeypatch.setattr(CheckpointStore, "_write", write)
    with pytest.raises(OSError, match=r"the disk is full: checkpoint .*epoch_0002\.pt"):
        kr.RUNS["classifier"](str(tmp_path / "ck"))
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "epoch_0000.pt",
        "epoch_0001.pt",
    ]
    out = kr.RUNS["classifier"](str(tmp_path / "ck"))  # space freed: run again
    assert out["resumed_from"] == 1
    assert_same(ref, out)


# --- corrupted checkpoints --------------------------------------------------------------------


def corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random_bytes":
        path.write_bytes(torch.randint(0, 256, (len(data),), dtype=torch.uint8).numpy().tobytes())
    elif how == "wrong_keys":  # a valid torch file, but a bare state dict
        torch.save({"conv.weight": torch.zeros(3, 3)}, path)
    elif how == "wrong_shapes":  # a checkpoint of this run whose weights do not fit the model
        state = torch.load(path, weights_only=True)
        key = "model" if "model" in state else "unet"
        first = next(iter(state[key]))
        state[key][first] = torch.zeros(1)
        torch.save(state, path)
    else:
        raise ValueError(how)


@pytest.mark.parametrize("how", ["truncated", "random_bytes", "wrong_keys", "wrong_shapes"])
@pytest.mark.parametrize("training", ["classifier", "diffusion"])
def test_a_corrupted_newest_checkpoint_falls_back_to_the_previous(training, how, tmp_path, caplog):
    ref = reference(training)
    folder = tmp_path / "ck"
    kr.RUNS[training](str(folder))  # a finished run: its last two checkpoints are kept
    files = sorted(folder.glob("*.pt"))
    assert len(files) == 2
    corrupt(files[-1], how)
    with caplog.at_level(logging.WARNING, logger="cxr_augment.classify.training"):
        out = kr.RUNS[training](str(folder))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"checkpoint {files[-1]} cannot be resumed" in warnings[0]
    assert f"Resuming from the previous checkpoint, {files[0]}" in warnings[0]
    if training == "classifier":
        assert out["resumed_from"] == 2
    assert_same(ref, out)  # the last epoch / steps trained again, to the same weights
    assert sorted(folder.glob("*.pt")) == files  # the bad file overwritten
    torch.load(files[-1], weights_only=True)


@pytest.mark.parametrize("how", ["truncated", "empty", "random_bytes", "wrong_keys"])
def test_a_store_with_no_good_checkpoint_is_a_clear_error(how, tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(0, {"fingerprint": "x", "w": torch.zeros(3)})
    corrupt(tmp_path / "epoch_0000.pt", how)

    def check(state):
        classify_training.require_keys(state, ("fingerprint", "w"))

    with pytest.raises(CheckpointError) as info:
        store.resume(check)
    message = str(info.value)
    assert f"checkpoint {tmp_path / 'epoch_0000.pt'} cannot be resumed" in message
    assert f"delete {tmp_path / 'epoch_0000.pt'} to start this training afresh" in message
    expected = (
        "missing 'fingerprint'" if how == "wrong_keys" else "unreadable: truncated, corrupted"
    )
    assert expected in message
    # two bad checkpoints: both named
    store.save(1, {"w": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="no checkpoint in .* can be resumed") as info:
        store.resume(check)
    assert "epoch_0000.pt" in str(info.value) and "epoch_0001.pt" in str(info.value)
