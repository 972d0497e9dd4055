"""kedro-datasets' file datasets, saved atomically on a local disk.

kedro-datasets streams a save straight into its target (``to_csv`` into the open file, for
instance), so a run killed mid-save, or a serialiser that fails halfway, leaves a truncated
table that the next run would read as if it were whole. These subclasses write to a hidden
``.<name>.partial-<machine>p<pid>-<id><suffix>`` beside the target and rename it over the
target only once the save finished (``os.replace``: atomic on one filesystem); a failed save
removes its partial file and leaves the previous version untouched. A process killed mid-save
cannot: the next save of the same target removes the partial files whose process has ended
(``remove_leftovers``; the tensor stores, diffusion models and image folders do the same with
their staging folders). The partial file is flushed to the
disk (``fsync``) before the rename, so a full disk that a filesystem reports only then is
caught before the target is replaced; a full disk (``ENOSPC``, or a quota: ``EDQUOT``) is
reported as an ``OSError`` that names the target and says the disk is full (Kedro wraps it in
its ``DatasetError``). Other filesystems (s3, gcs...) and versioned datasets save as
kedro-datasets does.

Use them by their full path in the catalog::

    type: cxr_augment.datasets.atomic.CSVDataset
"""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath
from typing import Any

from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset as _MatplotlibDataset
from kedro_datasets.pandas import CSVDataset as _CSVDataset
from kedro_datasets.pandas import ParquetDataset as _ParquetDataset
from kedro_datasets.pickle import PickleDataset as _PickleDataset
from kedro_datasets.text import TextDataset as _TextDataset

from cxr_augment.leftovers import owned_name, remove_leftovers


def partial_path(final: PurePosixPath) -> PurePosixPath:
    """The hidden file a save goes to before it is renamed to ``final``."""
    return final.with_name(owned_name(final.stem, "partial", final.suffix))


DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from or during, is a full disk (or quota).

    Serialisers often re-raise a failed write as their own error (torch's zip writer raises
    ``RuntimeError``), so the whole chain is looked at."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to the disk (where a full disk may only show now)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: what an OS or filesystem answers when it cannot open or fsync a folder at all (Windows,
#: some network and FUSE filesystems): the rename stands, only its durability is not forced
_NO_FOLDER_FSYNC = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EISDIR,
                              errno.EACCES, errno.EPERM})  # fmt: skip


def fsync_folder(path: str | os.PathLike) -> None:
    """Make a rename in ``path`` durable. A filesystem that cannot fsync a folder is left as it
    is; any other failure (an I/O error) is raised, naming the folder."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        if err.errno in _NO_FOLDER_FSYNC:
            return
        raise OSError(err.errno, f"cannot open folder {path} to make a rename durable: "
                      f"{err.strerror}") from err  # fmt: skip
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in _NO_FOLDER_FSYNC:
            raise OSError(err.errno, f"cannot flush folder {path} after a rename: "
                          f"{err.strerror}") from err  # fmt: skip
    finally:
        os.close(fd)


class _AtomicSave:
    """Mixin: ``save`` through a partial file renamed over the target."""

    _containers_are_folders = False  # MatplotlibDataset saves a list or dict as a folder

    def save(self, data: Any) -> None:
        parent = super().save  # kedro's wrapper around the parent's save
        inner = getattr(parent, "__wrapped__", None)

        def run() -> None:
            # the wrapper of this class already logs and wraps errors: call the bare save
            inner(self, data) if inner is not None else parent(data)

        if self._protocol != "file" or getattr(self, "_version", None) is not None:
            run()
            return
        final = self._filepath
        if self._containers_are_folders and isinstance(data, list | dict):
            run()
            return
        final_path = Path(final)
        remove_leftovers(final_path.parent, final_path.stem, ("partial",), final_path.suffix)
        tmp = partial_path(final)
        self._filepath = tmp
        try:
            run()
            fsync_file(tmp)
            os.replace(tmp, final)
        except Exception as exc:
            if not disk_full(exc):
                raise
            name = Path(final).name
            kept = (
                f"the previous {name} is left as it was"
                if Path(final).exists()
                else f"no partial {name} is left behind"
            )
            raise OSError(
                errno.ENOSPC,
                f"the disk is full: {final} could not be saved (no space left on the device "
                f"while writing it); {kept}. Free some disk space and run again",
            ) from exc
        finally:
            self._filepath = final
            Path(tmp).unlink(missing_ok=True)
        fsync_folder(Path(final).parent)
        self._invalidate_cache()

    # kedro's AbstractDataset.__init_subclass__ makes ``save`` an alias of ``_save`` when a
    # class has one (kedro-datasets' classes do): both must name the atomic save
    _save = save


class CSVDataset(_AtomicSave, _CSVDataset):
    """``pandas.CSVDataset``, saved atomically."""


class ParquetDataset(_AtomicSave, _ParquetDataset):
    """``pandas.ParquetDataset``, saved atomically."""


class JSONDataset(_AtomicSave, _JSONDataset):
    """``json.JSONDataset``, saved atomically."""


class TextDataset(_AtomicSave, _TextDataset):
    """``text.TextDataset``, saved atomically."""


class PickleDataset(_AtomicSave, _PickleDataset):
    """``pickle.PickleDataset``, saved atomically."""


class MatplotlibDataset(_AtomicSave, _MatplotlibDataset):
    """``matplotlib.MatplotlibDataset``: one figure saved atomically (a list or dict of
    figures is a folder, saved as kedro-datasets does). A saved figure loads as its file's
    bytes (the report embeds it as it is)."""

    _containers_are_folders = True

    def load(self) -> bytes:
        with self._fs.open(str(self._filepath), mode="rb") as f:
            return f.read()
