"""``TensorStoreDataset``: the Kedro face of ``cxr_augment.preprocess.tensor_store``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

from cxr_augment.preprocess.tensor_store import StoreWrite, TensorStore, read_meta, write_store

log = logging.getLogger(__name__)


class TensorStoreDataset(AbstractDataset[StoreWrite, TensorStore]):
    """Saves a ``StoreWrite`` (streaming, in parallel, atomically) and loads a ``TensorStore``.

    A save whose inputs carry the fingerprint of the store already on disk is skipped: rerunning
    with unchanged inputs reuses the store.

    Examples:
        >>> import numpy as np, tempfile
        >>> from cxr_augment.preprocess.tensor_store import StoreWrite
        >>> ds = TensorStoreDataset(path=tempfile.mkdtemp() + "/store")
        >>> ds.save(StoreWrite(["a", "b"], lambda i: np.full((2, 3), i, np.uint8), (2, 3), "f1"))
        >>> store = ds.load()
        >>> len(store), int(store.get("b")[0, 0])
        (2, 1)
    """

    def __init__(
        self,
        *,
        path: str,
        save_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """
        Args:
            path: the store folder (local filesystem: shards are memory-mapped).
            save_args: ``workers`` (processes, default 1), ``shard_size`` (images per shard,
                default 4096), ``chunk`` (images per task, default 64).
        """
        self._path = Path(path)
        self._save_args = {"workers": 1, "shard_size": 4096, "chunk": 64, **(save_args or {})}
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), **self._save_args}

    def _exists(self) -> bool:
        return read_meta(self._path) is not None

    def load(self) -> TensorStore:
        if read_meta(self._path) is None:
            raise DatasetError(f"no tensor store at {self._path}: run the preprocessing pipeline")
        return TensorStore(self._path)

    def save(self, data: StoreWrite) -> None:
        meta = read_meta(self._path)
        if meta is not None and meta.get("fingerprint") == data.fingerprint:
            log.info(
                "tensor store %s: inputs unchanged (%s), reusing it",
                self._path,
                data.fingerprint[:12],
            )
            return
        write_store(
            self._path,
            data,
            shard_size=int(self._save_args["shard_size"]),
            workers=int(self._save_args["workers"]),
            chunk=int(self._save_args["chunk"]),
        )
