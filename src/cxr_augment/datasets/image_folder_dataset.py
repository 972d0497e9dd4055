"""``ImageFolderDataset``: a folder tree of 8-bit greyscale images, written in parallel and
atomically, read lazily.

Saving takes a mapping ``relative path -> image`` where an image is a uint8 array or a
zero-argument callable returning one (lazy: rendered only when written, so memory stays
bounded at any dataset size). Files are encoded by ``workers`` forked processes into a staging
folder beside the target; only when every file is written are the top-level subtrees swapped
into place, so a failed run leaves the previous tree intact and nothing half-written (a run
killed mid-save leaves its staging folder, which the next save removes).
Loading returns ``relative path -> callable`` that decodes the file on demand.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
from kedro.io.core import AbstractDataset, DatasetError

from cxr_augment.leftovers import owned_name, remove_leftovers
from cxr_augment.parallel import fork_map

_JOBS: dict[str, Any] = {}  # set before forking: workers read the mapping from here
_STAGING = "images"  # the staging folder: .images.staging-<machine>p<pid>-<id> in the root


def _encode(image: np.ndarray, suffix: str, quality: int) -> bytes:
    if image.dtype != np.uint8 or image.ndim != 2:
        raise DatasetError(f"expected a 2-D uint8 image, got {image.dtype} {image.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, image, params)
    if not ok:
        raise DatasetError(f"could not encode an image as {suffix}")
    return buf.tobytes()


def _write_one(key: str) -> str:
    data, staging, quality = _JOBS["data"], _JOBS["staging"], _JOBS["quality"]
    value = data[key]
    image = value() if callable(value) else value
    target = staging / key
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(_encode(np.asarray(image), target.suffix.lower(), quality))
    return key


def _init_worker() -> None:
    # Nothing here may start or reconfigure a thread pool (OpenCV, torch's OpenMP): pools are
    # not fork-safe once the parent has started them. ``cxr_augment`` keeps OpenCV at one
    # thread, and image writing uses no torch.
    pass


class ImageFolderDataset(AbstractDataset[Mapping[str, Any], "ImageFolder"]):
    """A tree of greyscale images under ``path``, keyed by relative path.

    Examples:
        >>> import numpy as np, tempfile
        >>> ds = ImageFolderDataset(path=tempfile.mkdtemp(), swap_depth=1)
        >>> ds.save({"a/x.png": np.full((4, 5), 7, np.uint8)})
        >>> loaded = ds.load()
        >>> sorted(loaded), int(loaded["a/x.png"]()[0, 0])
        (['a/x.png'], 7)
    """

    def __init__(
        self,
        *,
        path: str,
        suffixes: tuple[str, ...] = (".jpg", ".jpeg", ".png"),
        swap_depth: int = 2,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """
        Args:
            path: root folder (local filesystem).
            suffixes: file endings that count as images when loading.
            swap_depth: how many leading path components name a subtree that a save
                replaces as a whole (2: ``CheXpert-v1.0-small/train``); files beside those
                subtrees (the CSVs) are left alone.
            save_args: ``workers`` (processes, default 1), ``jpeg_quality`` (default 95).
        """
        self._root = Path(path)
        self._suffixes = tuple(s.lower() for s in suffixes)
        if swap_depth < 1:
            raise ValueError("swap_depth must be >= 1")
        self._swap_depth = swap_depth
        self._save_args = {"workers": 1, "jpeg_quality": 95, **(save_args or {})}
        self.metadata = metadata
        self._listing: ImageFolder | None = None  # kept (with its walk and stats) until a save

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._root), "swap_depth": self._swap_depth, **self._save_args}

    def _exists(self) -> bool:
        return self._root.is_dir() and next(self._iter_files(), None) is not None

    def _iter_files(self):
        """(relative key, absolute path) of every image file, in sorted order (plain strings:
        pathlib costs seconds on a CheXpert-size tree)."""
        root = str(self._root)
        for dirpath, dirnames, filenames in os.walk(root):
            # hidden folders: a save's staging folder, a subtree moved aside (and .cache, .git)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
            prefix = "" if rel == "." else rel + "/"
            for name in sorted(filenames):
                if name.lower().endswith(self._suffixes):
                    yield prefix + name, os.path.join(dirpath, name)

    def load(self) -> ImageFolder:
        if not self._root.is_dir():
            raise DatasetError(f"image folder not found: {self._root}")
        if self._listing is None:
            self._listing = ImageFolder(str(self._root), self._suffixes, self._iter_files)
        return self._listing

    def save(self, data: Mapping[str, Any]) -> None:
        self._listing = None
        keys = list(data)
        for key in keys:
            p = PurePosixPath(key)
            if p.is_absolute() or ".." in p.parts or len(p.parts) <= self._swap_depth:
                raise DatasetError(
                    f"image key {key!r}: must be relative, without '..', and deeper than "
                    f"swap_depth={self._swap_depth}"
                )
        self._root.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self._root, _STAGING, ("staging",))
        staging = self._root / owned_name(_STAGING, "staging")
        staging.mkdir()
        try:
            self._write_all(data, keys, staging)
            subtrees = sorted(
                {PurePosixPath(*PurePosixPath(k).parts[: self._swap_depth]) for k in keys}
            )
            for sub in subtrees:
                final = self._root / sub
                final.parent.mkdir(parents=True, exist_ok=True)
                old = None
                remove_leftovers(final.parent, final.name, ("old",))
                if final.exists():
                    old = final.with_name(owned_name(final.name, "old"))
                    final.rename(old)
                (staging / sub).rename(final)
                if old is not None:
                    shutil.rmtree(old)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _write_all(self, data: Mapping[str, Any], keys: list[str], staging: Path) -> None:
        workers = max(1, int(self._save_args["workers"]))
        _JOBS.update(data=data, staging=staging, quality=int(self._save_args["jpeg_quality"]))
        try:
            fork_map(_write_one, keys, workers, chunksize=8, initializer=_init_worker)
        finally:
            _JOBS.clear()


class ImageFolder(Mapping):
    """The loaded tree: ``relative path -> reader``, lazy.

    Membership and access look at the one file (a ``stat``, remembered), so checking a
    CheXpert-size list of paths costs no walk of the tree; iterating walks it once.
    ``files_in(folder)`` lists the images directly inside one sub-folder.
    """

    def __init__(self, root: str, suffixes: tuple[str, ...], walk) -> None:
        self._root = root
        self._suffixes = suffixes
        self._walk = walk
        self._keys: list[str] | None = None
        self._stats: dict[str, tuple[int, int]] = {}

    def _path(self, key: str) -> str | None:
        if not isinstance(key, str) or key.startswith("/") or ".." in key.split("/"):
            return None
        return f"{self._root}/{key}"

    def __contains__(self, key) -> bool:
        if key in self._stats:
            return True
        if not isinstance(key, str) or not key.lower().endswith(self._suffixes):
            return False
        path = self._path(key)
        if path is None:
            return False
        try:
            st = os.stat(path)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        self._stats[key] = (st.st_size, st.st_mtime_ns)
        return True

    def __getitem__(self, key: str) -> _Reader:
        if key not in self:
            raise KeyError(key)
        return _Reader(self._path(key), self._stats[key])

    def __iter__(self):
        if self._keys is None:
            self._keys = [key for key, _ in self._walk()]
        return iter(self._keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def missing(self, keys: list[str]) -> list[int]:
        """Positions of ``keys`` that are not image files here (one ``stat`` each, remembered).

        The bulk form of ``key in folder`` for a CheXpert-size list of paths.
        """
        out = []
        stats, root, suffixes = self._stats, self._root, self._suffixes
        for i, key in enumerate(keys):
            if key in stats:
                continue
            if (
                not isinstance(key, str)
                or key.startswith("/")
                or "/../" in f"/{key}/"
                or not key.lower().endswith(suffixes)
            ):
                out.append(i)
                continue
            try:
                st = os.stat(f"{root}/{key}")
            except OSError:
                out.append(i)
                continue
            if stat.S_ISREG(st.st_mode):
                stats[key] = (st.st_size, st.st_mtime_ns)
            else:
                out.append(i)
        return out

    def files_in(self, folder: str) -> list[str]:
        """Image keys directly inside ``folder`` (a relative folder key), sorted."""
        path = self._path(folder)
        if path is None or not os.path.isdir(path):
            return []
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(self._suffixes))
        return [f"{folder}/{n}" for n in names if f"{folder}/{n}" in self]


class _Reader:
    """One image file: called, it decodes to a uint8 greyscale array; ``read_bytes`` gives the
    raw file for stricter decoders, ``stat`` its size and modification time."""

    __slots__ = ("path", "_stat")

    def __init__(self, path: str, stat_: tuple[int, int] | None = None) -> None:
        self.path = path
        self._stat = stat_

    def __call__(self) -> np.ndarray:
        image = cv2.imread(self.path, cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise DatasetError(f"{self.path}: not a decodable image")
        return image

    def read_bytes(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    def stat(self) -> tuple[int, int]:
        if self._stat is None:
            st = os.stat(self.path)
            self._stat = (st.st_size, st.st_mtime_ns)
        return self._stat

    def __repr__(self) -> str:
        return f"_Reader({self.path})"
