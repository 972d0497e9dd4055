"""PyTorch state dicts and checkpoint folders in the catalog."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.io.core import AbstractDataset, DatasetError

from cxr_augment.datasets.atomic import fsync_file, fsync_folder
from cxr_augment.leftovers import owned_name, remove_leftovers

if TYPE_CHECKING:  # torch is imported on first load or save, not with the catalog
    from cxr_augment.classify.checkpoints import CheckpointStore


def _replace_atomically(final: Path, write: Callable[[Path], None]) -> None:
    """``write`` a hidden partial file beside ``final``, flush it and rename it over ``final``;
    a failed write removes it, and a partial file a killed save left is removed first.

    The partial file is ``.<final's name>.partial-<owner>``: torch names the archive inside a
    ``.pt`` file after the file it writes, less its last suffix, so the same state dict gives
    the same bytes whatever process saves it (``.model.pt/data.pkl``, as before the owner was in
    the name), where ``.model.partial-<owner>.pt`` would put the process id into the file."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(final.parent, final.name, ("partial",))
    tmp = final.with_name(owned_name(final.name, "partial"))
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_folder(final.parent)


class TorchStateDictDataset(AbstractDataset[dict, dict]):
    """A model's ``state_dict`` as a ``.pt`` file, written atomically.

    Loaded with ``weights_only=True``: a state dict holds tensors only, and a file from
    elsewhere must never run code when it is opened.

    Examples:
        >>> import tempfile, torch
        >>> ds = TorchStateDictDataset(filepath=tempfile.mkdtemp() + "/m.pt")
        >>> ds.save({"w": torch.ones(2)})
        >>> ds.load()["w"].tolist()
        [1.0, 1.0]
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def load(self) -> dict:
        if not self._filepath.is_file():
            raise DatasetError(f"no model at {self._filepath}: run its training first")
        import torch

        return torch.load(self._filepath, map_location="cpu", weights_only=True)

    def save(self, data: dict) -> None:
        import torch

        _replace_atomically(self._filepath, lambda tmp: torch.save(data, tmp))


class CheckpointFolderDataset(AbstractDataset[None, "CheckpointStore"]):
    """Hands the training node the folder its per-epoch checkpoints go to (and resume from)."""

    #: the folder is the training's working state, not an input whose change makes the node's
    #: outputs out of date (the incremental runner does not fingerprint it)
    is_state = True

    def __init__(self, *, path: str, keep: int = 2, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self._keep = keep
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "keep": self._keep}

    def _exists(self) -> bool:
        return True  # an empty folder is a valid (fresh) checkpoint store

    def load(self) -> CheckpointStore:
        from cxr_augment.classify.checkpoints import CheckpointStore

        return CheckpointStore(self._path, keep=self._keep)

    def save(self, data: Any) -> None:
        raise DatasetError("checkpoints are written by the training node through the store")


class SafetensorsDataset(AbstractDataset[dict, dict]):
    """A dict of tensors (LoRA weights, say) as a ``.safetensors`` file, written atomically.

    safetensors holds tensors only: loading never runs code. An empty dict (a skipped
    fine-tuning) is saved and loaded as an empty file of the format.

    Examples:
        >>> import tempfile, torch
        >>> ds = SafetensorsDataset(filepath=tempfile.mkdtemp() + "/w.safetensors")
        >>> ds.save({"a": torch.ones(2)})
        >>> ds.load()["a"].tolist()
        [1.0, 1.0]
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def load(self) -> dict:
        if not self._filepath.is_file():
            raise DatasetError(f"no weights at {self._filepath}: run the step that trains them")
        from safetensors.torch import load_file

        return load_file(str(self._filepath))

    def save(self, data: dict) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in data.items()}
        _replace_atomically(self._filepath, lambda tmp: save_file(tensors, str(tmp)))
