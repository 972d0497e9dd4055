"""``ImageFolderDataset``: a folder tree of 8-bit greyscale images, written in parallel and
atomically, read lazily.

Saving takes a mapping ``relative path -> image`` where an image is a uint8 array or a
zero-argument callable returning one (lazy: rendered only when written, so memory stays
bounded at any dataset size). Files are encoded by ``workers`` forked processes into a staging
folder beside the target; only when every file is written are the top-level subtrees swapped
into place, so a failed run leaves the previous tree intact and nothing half-written.
Loading returns ``relative path -> callable`` that decodes the file on demand.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
from kedro.io.core import AbstractDataset, DatasetError

_JOBS: dict[str, Any] = {}  # set before forking: workers read the mapping from here


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


class ImageFolderDataset(AbstractDataset[Mapping[str, Any], dict[str, Callable[[], np.ndarray]]]):
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

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._root), "swap_depth": self._swap_depth, **self._save_args}

    def _exists(self) -> bool:
        return self._root.is_dir() and any(self._iter_files())

    def _iter_files(self):
        for dirpath, dirnames, filenames in os.walk(self._root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".staging-"))
            for name in sorted(filenames):
                if name.lower().endswith(self._suffixes):
                    yield Path(dirpath) / name

    def load(self) -> dict[str, Callable[[], np.ndarray]]:
        if not self._root.is_dir():
            raise DatasetError(f"image folder not found: {self._root}")
        out = {}
        for file in self._iter_files():
            key = PurePosixPath(file.relative_to(self._root)).as_posix()
            out[key] = _Reader(file)
        return out

    def save(self, data: Mapping[str, Any]) -> None:
        keys = list(data)
        for key in keys:
            p = PurePosixPath(key)
            if p.is_absolute() or ".." in p.parts or len(p.parts) <= self._swap_depth:
                raise DatasetError(
                    f"image key {key!r}: must be relative, without '..', and deeper than "
                    f"swap_depth={self._swap_depth}"
                )
        self._root.mkdir(parents=True, exist_ok=True)
        staging = self._root / f".staging-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            self._write_all(data, keys, staging)
            subtrees = sorted({PurePosixPath(*PurePosixPath(k).parts[: self._swap_depth]) for k in keys})
            for sub in subtrees:
                final = self._root / sub
                final.parent.mkdir(parents=True, exist_ok=True)
                old = None
                if final.exists():
                    old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
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
            if workers == 1 or len(keys) < 2 or "fork" not in mp.get_all_start_methods():
                for key in keys:
                    _write_one(key)
                return
            ctx = mp.get_context("fork")
            with ctx.Pool(workers, initializer=_init_worker) as pool:
                for _ in pool.imap_unordered(_write_one, keys, chunksize=8):
                    pass
        finally:
            _JOBS.clear()


class _Reader:
    """Decodes one image file to a uint8 greyscale array when called."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> np.ndarray:
        image = cv2.imread(str(self.path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise DatasetError(f"{self.path}: not a decodable image")
        return image

    def __repr__(self) -> str:
        return f"_Reader({self.path})"
