"""An in-memory dataset that is shared between the processes of Kedro's ``ParallelRunner``.

Kedro's ``ParallelRunner`` gives each node its own worker process. Datasets the catalog does
not declare become ``SharedMemoryDataset``s there (a manager process holds their data), but a
dataset declared ``kedro.io.MemoryDataset`` stays a plain one: what a worker saves stays in
that worker, and the next node's worker loads nothing (Kedro's empty marker, which made a node
fail with "'object' object is not subscriptable"). ``ProcessMemoryDataset`` is the declared
in-memory dataset of this project's catalog: a ``MemoryDataset`` (so the sequential runners,
kedro-dagster and the incremental runner treat it as one) that uses the multiprocessing
manager's shared dataset once ``ParallelRunner`` hands it one (``set_manager``, as it does for
a ``SharedMemoryDataset``).
"""

from __future__ import annotations

from typing import Any

from kedro.io import MemoryDataset
from kedro.io.shared_memory_dataset import SharedMemoryDataset


class ProcessMemoryDataset(MemoryDataset, SharedMemoryDataset):
    """``MemoryDataset`` in one process; the manager's shared dataset under ``ParallelRunner``.

    Example (catalog)::

        "{experiment}.spec":
          type: cxr_augment.datasets.ProcessMemoryDataset
    """

    def __init__(self, copy_mode: str | None = None, metadata: dict[str, Any] | None = None):
        MemoryDataset.__init__(self, copy_mode=copy_mode, metadata=metadata)
        self.shared_memory_dataset = None

    def __getattr__(self, name: str) -> Any:
        # not SharedMemoryDataset's forwarding to the shared dataset (absent in one process)
        raise AttributeError(name)

    def set_manager(self, manager) -> None:
        self.shared_memory_dataset = manager.MemoryDataset(copy_mode=self._copy_mode)

    def load(self) -> Any:
        if self.shared_memory_dataset is not None:
            return self.shared_memory_dataset.load()
        return MemoryDataset.load.__wrapped__(self)  # unwrapped: this load is wrapped

    def save(self, data: Any) -> None:
        if self.shared_memory_dataset is not None:
            SharedMemoryDataset.save.__wrapped__(self, data)
        else:
            MemoryDataset.save.__wrapped__(self, data)

    def _exists(self) -> bool:
        if self.shared_memory_dataset is not None:
            return bool(self.shared_memory_dataset.exists())
        return MemoryDataset._exists(self)

    def _describe(self) -> dict[str, Any]:
        return {**MemoryDataset._describe(self), "shared": self.shared_memory_dataset is not None}
