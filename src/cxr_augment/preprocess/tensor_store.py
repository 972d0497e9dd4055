"""The tensor store: uint8 images in memory-mapped ``.npy`` shards, with an index.

Training reads images by row with random access and no decoding; writing streams (each image
is produced, written into its shard's memory map and dropped), so memory stays bounded at any
dataset size, and decoding is spread over worker processes.

Layout of a store folder::

    meta.json            shape, dtype, count, shard size, fingerprint of the inputs, format
    index.parquet        key, row, shard, offset   (one row per stored image)
    quarantine.parquet   key, reason               (images that could not be stored)
    shard_00000.npy ...  (n, H, W) uint8

A store is written into a staging folder and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_augment.leftovers import owned_name, remove_leftovers
from cxr_augment.parallel import fork_map
from cxr_augment.preprocess.imaging import DecodeError

FORMAT = 1


@dataclass
class StoreWrite:
    """Everything a store needs to be written: keys, a producer, the image shape.

    ``produce(i)`` returns the uint8 (H, W) image of ``keys[i]`` or raises ``DecodeError``
    (the image is quarantined with its reason). ``fingerprint`` identifies the inputs: a store
    already holding the same fingerprint is reused instead of rewritten.
    """

    keys: Sequence[str]
    produce: Callable[[int], np.ndarray]
    shape: tuple[int, int]
    fingerprint: str
    # at most this many processes (1: a producer that holds a model, or a GPU, samples in the
    # writing process; forked children cannot use CUDA and would each sample whole batches)
    max_workers: int | None = None


_JOB: dict = {}  # the job, set before forking: workers inherit it


def _shard_of(i: int, shard_size: int) -> tuple[int, int]:
    return i // shard_size, i % shard_size


def _write_chunk(bounds: tuple[int, int]) -> list[tuple[int, str]]:
    """Produce images lo..hi-1 (all in one shard) and write them with one ``pwrite``; return
    (index, reason) of the failures, whose slots stay zero.

    One sequential write per chunk costs the kernel far less than faulting a memory map in
    page by page, which matters when the workers already use every core.
    """
    job, folder, shard_size = _JOB["job"], _JOB["folder"], _JOB["shard_size"]
    offsets = _JOB["data_offsets"]
    lo, hi = bounds
    shard, first = _shard_of(lo, shard_size)
    h, w = job.shape
    buffer = np.zeros((hi - lo, h, w), dtype=np.uint8)
    failures = []
    for i in range(lo, hi):
        try:
            image = job.produce(i)
        except DecodeError as err:
            failures.append((i, err.reason))
            continue
        if image.shape != (h, w) or image.dtype != np.uint8:
            raise ValueError(
                f"{job.keys[i]}: produced {image.dtype} {image.shape}, expected uint8 {job.shape}"
            )
        buffer[i - lo] = image
    fd = os.open(folder / f"shard_{shard:05d}.npy", os.O_WRONLY)
    try:
        os.pwrite(fd, buffer.data, offsets[shard] + first * h * w)
    finally:
        os.close(fd)
    return failures


def write_store(
    folder: str | Path, job: StoreWrite, shard_size: int = 4096, workers: int = 1, chunk: int = 64
) -> None:
    """Write ``job`` as a tensor store at ``folder`` (atomically; see module docstring)."""
    folder = Path(folder)
    if job.max_workers is not None:
        workers = min(workers, job.max_workers)
    n = len(job.keys)
    h, w = job.shape
    remove_leftovers(folder.parent, folder.name, ("staging", "old"))
    staging = folder.with_name(owned_name(folder.name, "staging"))
    staging.mkdir(parents=True)
    try:
        data_offsets = []
        for s in range((n + shard_size - 1) // shard_size):
            count = min(shard_size, n - s * shard_size)
            shard = np.lib.format.open_memmap(
                staging / f"shard_{s:05d}.npy", mode="w+", dtype=np.uint8, shape=(count, h, w)
            )
            data_offsets.append(shard.offset)
            del shard
        # chunks never straddle two shards
        bounds = [
            (lo, min(lo + chunk, n, (lo // shard_size + 1) * shard_size))
            for s0 in range(0, n, shard_size)
            for lo in range(s0, min(s0 + shard_size, n), chunk)
        ]
        _JOB.update(job=job, folder=staging, shard_size=shard_size, data_offsets=data_offsets)
        try:
            results = fork_map(_write_chunk, bounds, workers)
        finally:
            _JOB.clear()
        failed = dict(f for part in results for f in part)
        ok = np.array([i for i in range(n) if i not in failed], dtype=np.int64)
        index = pd.DataFrame(
            {
                "key": pd.Series([job.keys[i] for i in ok], dtype="string"),
                "row": np.arange(len(ok), dtype=np.int64),
                "shard": (ok // shard_size).astype(np.int32),
                "offset": (ok % shard_size).astype(np.int32),
            }
        )
        quarantine = pd.DataFrame(
            {
                "key": pd.Series([job.keys[i] for i in sorted(failed)], dtype="string"),
                "reason": pd.Series([failed[i] for i in sorted(failed)], dtype="string"),
            }
        )
        index.to_parquet(staging / "index.parquet", index=False)
        quarantine.to_parquet(staging / "quarantine.parquet", index=False)
        meta = {
            "format": FORMAT,
            "shape": [h, w],
            "dtype": "uint8",
            "count": int(len(ok)),
            "inputs": n,
            "shard_size": shard_size,
            "fingerprint": job.fingerprint,
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        old = None
        if folder.exists():
            old = folder.with_name(owned_name(folder.name, "old"))
            folder.rename(old)
        staging.rename(folder)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_meta(folder: str | Path) -> dict | None:
    path = Path(folder) / "meta.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


class TensorStore:
    """Random access to a written store; picklable (shards reopen lazily in each process)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta = read_meta(self.folder)
        if meta is None:
            raise FileNotFoundError(f"no tensor store at {self.folder} (meta.json missing)")
        if meta.get("format") != FORMAT:
            raise ValueError(f"{self.folder}: store format {meta.get('format')}, expected {FORMAT}")
        self.meta = meta
        self.index = pd.read_parquet(self.folder / "index.parquet")
        self.quarantine = pd.read_parquet(self.folder / "quarantine.parquet")
        self._shard = self.index["shard"].to_numpy()
        self._offset = self.index["offset"].to_numpy()
        self._rows = None
        self._maps: dict[int, np.ndarray] = {}

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.meta["shape"])

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    def __len__(self) -> int:
        return len(self.index)

    def _map(self, shard: int) -> np.ndarray:
        if shard not in self._maps:
            self._maps[shard] = np.load(self.folder / f"shard_{shard:05d}.npy", mmap_mode="r")
        return self._maps[shard]

    def __getitem__(self, row: int) -> np.ndarray:
        return np.array(self._map(int(self._shard[row]))[int(self._offset[row])])

    def positions(self, keys) -> np.ndarray:
        """Store rows of ``keys``, -1 where a key is not stored."""
        if self._rows is None:
            self._rows = pd.Index(self.index["key"].to_numpy())
        pos = self._rows.get_indexer(np.asarray(keys, dtype=object))
        return np.where(pos >= 0, self.index["row"].to_numpy()[np.maximum(pos, 0)], -1)

    def rows_of(self, keys) -> np.ndarray:
        """Store rows of ``keys`` (KeyError naming the first missing key)."""
        keys = np.asarray(keys, dtype=object)
        rows = self.positions(keys)
        if (rows < 0).any():
            missing = keys[rows < 0]
            raise KeyError(f"{len(missing)} keys not in the tensor store, e.g. {missing[0]!r}")
        return rows

    def get(self, key: str) -> np.ndarray:
        return self[int(self.rows_of([key])[0])]

    def batch(self, rows) -> np.ndarray:
        return (
            np.stack([self[int(r)] for r in rows])
            if len(rows)
            else np.zeros((0, *self.shape), np.uint8)
        )

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state


def torch_dataset(store: TensorStore, keys, targets=None, transform=None):
    """A ``torch.utils.data.Dataset`` of (image tensor (1, H, W) in [0, 1], target).

    ``targets`` is an array aligned with ``keys`` (NaN allowed: masked targets); ``transform``
    maps the uint8 (H, W) array before it becomes a tensor.
    """
    import torch

    rows = store.rows_of(keys)
    y = None if targets is None else torch.as_tensor(np.asarray(targets, dtype=np.float32))

    class _StoreDataset(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int):
            image = store[int(rows[i])]
            if transform is not None:
                image = transform(image)
            x = torch.from_numpy(np.ascontiguousarray(image)).unsqueeze(0).float().div_(255.0)
            return (x, y[i]) if y is not None else x

    return _StoreDataset()


class CombinedStore:
    """Several stores read as one (the real images and an augmented set, say).

    Rows are numbered store after store; keys must be unique across the stores.
    """

    def __init__(self, stores: list[TensorStore]) -> None:
        if len({s.shape for s in stores}) != 1:
            raise ValueError(f"stores of different image sizes: {[s.shape for s in stores]}")
        self.stores = stores
        self.offsets = np.cumsum([0] + [len(s) for s in stores])
        self.shape = stores[0].shape
        self.fingerprint = "+".join(s.fingerprint for s in stores)
        self.meta = {"shape": list(self.shape), "fingerprint": self.fingerprint}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, row: int) -> np.ndarray:
        k = int(np.searchsorted(self.offsets, row, side="right") - 1)
        return self.stores[k][row - int(self.offsets[k])]

    def rows_of(self, keys) -> np.ndarray:
        keys = np.asarray(keys, dtype=object)
        out = np.full(len(keys), -1, dtype=np.int64)
        for k, store in enumerate(self.stores):
            pos = store.positions(keys)
            hit = (pos >= 0) & (out < 0)
            out[hit] = pos[hit] + self.offsets[k]
        if (out < 0).any():
            missing = keys[out < 0]
            raise KeyError(f"{len(missing)} keys in none of the stores, e.g. {missing[0]!r}")
        return out

    def get(self, key: str) -> np.ndarray:
        return self[int(self.rows_of([key])[0])]
