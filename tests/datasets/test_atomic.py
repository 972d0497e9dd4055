"""Atomic saves: a finished save replaces the target, a failed one leaves it untouched."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from kedro.io import DatasetError  # noqa: E402

from cxr_augment.datasets import atomic  # noqa: E402


class Exploding:
    """Pickles its first part, then fails: a serialiser that dies halfway."""

    def __reduce__(self):
        raise RuntimeError("boom")


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


def test_csv_round_trip_and_no_partial_file(tmp_path):
    ds = atomic.CSVDataset(filepath=str(tmp_path / "t.csv"), save_args={"index": False})
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    ds.save(df)
    pd.testing.assert_frame_equal(ds.load(), df)
    assert leftovers(tmp_path) == [] and ds.exists()


def test_a_failed_save_keeps_the_previous_version(tmp_path):
    ds = atomic.PickleDataset(filepath=str(tmp_path / "p.pkl"))
    ds.save({"version": 1})
    with pytest.raises(DatasetError, match="boom"):
        ds.save({"version": 2, "bad": [list(range(1000)), Exploding()]})
    assert ds.load() == {"version": 1}
    assert leftovers(tmp_path) == []


def test_a_failed_csv_save_leaves_no_target(tmp_path, monkeypatch):
    ds = atomic.CSVDataset(filepath=str(tmp_path / "sub" / "t.csv"))
    real = pd.DataFrame.to_csv

    def half(self, path_or_buf=None, **kw):
        path_or_buf.write("a,b\n1,")  # half a table, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half)
    with pytest.raises(DatasetError, match="disk full"):
        ds.save(pd.DataFrame({"a": [1], "b": [2]}))
    monkeypatch.setattr(pd.DataFrame, "to_csv", real)
    assert not (tmp_path / "sub" / "t.csv").exists()
    assert leftovers(tmp_path / "sub") == []


def test_every_kind_saves_to_its_target(tmp_path):
    df = pd.DataFrame({"a": [1.5, 2.5]})
    atomic.ParquetDataset(filepath=str(tmp_path / "t.parquet")).save(df)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), df)
    atomic.JSONDataset(filepath=str(tmp_path / "t.json")).save({"k": [1, 2]})
    assert atomic.JSONDataset(filepath=str(tmp_path / "t.json")).load() == {"k": [1, 2]}
    atomic.TextDataset(filepath=str(tmp_path / "t.md")).save("# title\n")
    assert (tmp_path / "t.md").read_text() == "# title\n"
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    atomic.MatplotlibDataset(filepath=str(tmp_path / "f.png")).save(fig)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert leftovers(tmp_path) == []


def test_partial_path_is_hidden_beside_the_target():
    from pathlib import PurePosixPath

    p = atomic.partial_path(PurePosixPath("/a/b/table.csv"))
    assert p.parent == PurePosixPath("/a/b")
    assert p.name.startswith(".table.partial-") and p.suffix == ".csv"


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_full_disk_is_a_clear_error_and_keeps_the_previous_file(where, tmp_path, monkeypatch):
    import errno
    import os

    target = tmp_path / "t.csv"
    ds = atomic.CSVDataset(filepath=str(target), save_args={"index": False})
    ds.save(pd.DataFrame({"a": [1, 2]}))
    before = target.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "write":  # the disk fills during the write

        def half(self, path_or_buf=None, **kw):
            path_or_buf.write("a\n3\n")
            full()

        monkeypatch.setattr(pd.DataFrame, "to_csv", half)
    else:  # reported only when the data is flushed to the disk
        monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(DatasetError) as info:
        ds.save(pd.DataFrame({"a": [3, 4]}))
    monkeypatch.undo()
    message = str(info.value)
    assert f"the disk is full: {target} could not be saved" in message
    assert "the previous t.csv is left as it was" in message
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert target.read_bytes() == before and leftovers(tmp_path) == []
    # the failed save leaves nothing in the way: the next save (with room on the disk) lands
    ds.save(pd.DataFrame({"a": [5, 6]}))
    pd.testing.assert_frame_equal(ds.load(), pd.DataFrame({"a": [5, 6]}))
    assert leftovers(tmp_path) == []


def test_folder_fsync_tolerates_a_filesystem_without_it_and_raises_an_io_error(
    tmp_path, monkeypatch
):
    import errno
    import os

    import pytest

    from cxr_augment.datasets import atomic

    def failing(code):
        def fsync(fd):
            raise OSError(code, os.strerror(code))

        return fsync

    monkeypatch.setattr(atomic.os, "fsync", failing(errno.EINVAL))
    atomic.fsync_folder(tmp_path)  # cannot fsync a folder here: the rename stands
    monkeypatch.setattr(atomic.os, "fsync", failing(errno.EIO))
    with pytest.raises(OSError, match=f"cannot flush folder {tmp_path}"):
        atomic.fsync_folder(tmp_path)
