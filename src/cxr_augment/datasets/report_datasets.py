"""Datasets the report reads: results that may not have been made yet, figures as PNG bytes,
and the run's provenance.

- ``OptionalDataset`` loads the wrapped dataset, or ``None`` when it has not been made (the
  report then says "not run" and names the command that makes it);
- ``BytesDataset`` loads a file's bytes (a saved figure, embedded as it is);
- ``ProvenanceDataset`` loads the code's git commit, the package versions and the platform.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError, parse_dataset_definition

from cxr_augment.cpu import native_bf16

PACKAGES = (
    "kedro",
    "kedro-datasets",
    "kedro-dagster",
    "dagster",
    "torch",
    "torchvision",
    "diffusers",
    "numpy",
    "pandas",
    "scikit-learn",
    "scikit-image",
    "opencv-python-headless",
    "opencv-python",
    "statsmodels",
    "pytorch-fid",
    "timm",
    "accelerate",
    "peft",
)


class OptionalDataset(AbstractDataset[Any, Any]):
    """Loads through the wrapped dataset, or ``None`` when it does not exist; never saves.

    Examples:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/t.csv"
        >>> ds = OptionalDataset(dataset={"type": "pandas.CSVDataset", "filepath": path})
        >>> ds.load() is None
        True
    """

    def __init__(self, *, dataset: dict[str, Any], metadata=None) -> None:
        cls, config = parse_dataset_definition(dict(dataset))
        self._inner = cls(**config)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"optional": self._inner._describe()}

    def _exists(self) -> bool:
        return self._inner.exists()

    def load(self) -> Any:
        return self._inner.load() if self._inner.exists() else None

    def save(self, data: Any) -> None:
        raise DatasetError(f"the report reads {self._inner._describe()}; it never writes it")


class BytesDataset(AbstractDataset[bytes, bytes]):
    """A file's bytes (e.g. a PNG figure saved by another node)."""

    def __init__(self, *, filepath: str, metadata=None) -> None:
        self._path = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path)}

    def _exists(self) -> bool:
        return self._path.is_file()

    def load(self) -> bytes:
        return self._path.read_bytes()

    def save(self, data: bytes) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.partial")
        tmp.write_bytes(data)
        tmp.replace(self._path)


def git_commit(root: Path) -> dict[str, Any]:
    """The commit of the project's checkout and whether it has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown (not a git checkout)", "uncommitted_changes": None}
    return {"commit": commit, "uncommitted_changes": bool(status.strip())}


def package_versions(names=PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


class ProvenanceDataset(AbstractDataset[dict, dict]):
    """Loads the run's provenance: git commit, Python, platform, whether the CPU has bfloat16
    instructions, package versions."""

    def __init__(self, *, root: str = ".", metadata=None) -> None:
        self._root = Path(root)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"root": str(self._root)}

    def _exists(self) -> bool:
        return True

    def load(self) -> dict:
        return {
            **git_commit(self._root),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            # bf16_cpu: auto trains in bfloat16 only on a CPU with its instructions (cpu.py)
            "cpu_bfloat16_instructions": "yes" if native_bf16() else "no",
            "packages": package_versions(),
        }

    def save(self, data: dict) -> None:
        raise DatasetError("provenance is read from the checkout, not saved")
