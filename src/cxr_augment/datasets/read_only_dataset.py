"""``ReadOnlyDataset`` guards an input (a real CheXpert download) against being overwritten."""

from __future__ import annotations

from typing import Any

from kedro.io.core import AbstractDataset, DatasetError, parse_dataset_definition


class ReadOnlyDataset(AbstractDataset[Any, Any]):
    """Loads through the wrapped dataset; refuses to save.

    Examples:
        >>> import tempfile, pandas as pd, pytest
        >>> path = tempfile.mkdtemp() + "/t.csv"
        >>> pd.DataFrame({"a": [1]}).to_csv(path, index=False)
        >>> ds = ReadOnlyDataset(dataset={"type": "pandas.CSVDataset", "filepath": path})
        >>> ds.load()["a"].tolist()
        [1]
    """

    def __init__(self, *, dataset: dict[str, Any], reason: str = "", metadata=None) -> None:
        cls, config = parse_dataset_definition(dict(dataset))
        self._inner = cls(**config)
        self._reason = reason
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"read_only": self._inner._describe()}

    def _exists(self) -> bool:
        return self._inner.exists()

    def load(self) -> Any:
        return self._inner.load()

    def save(self, data: Any) -> None:
        raise DatasetError(f"read-only dataset ({self._inner._describe()}): {self._reason}")


class AbsentDataset(AbstractDataset[Any, Any]):
    """Stands for an input that this environment does not have: loads ``None``.

    For example the demo's truth sidecar, which a real CheXpert download does not carry.
    """

    def __init__(self, *, reason: str = "", metadata=None) -> None:
        self._reason = reason
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"absent": self._reason}

    def _exists(self) -> bool:
        return False

    def load(self) -> None:
        return None

    def save(self, data: Any) -> None:
        raise DatasetError(f"nothing can be saved here: {self._reason}")
