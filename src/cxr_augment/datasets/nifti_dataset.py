"""``NiftiDataset`` loads a NIfTI volume (``.nii`` / ``.nii.gz``) with nibabel, read-only."""

from __future__ import annotations

import gzip
import io
from pathlib import PurePosixPath
from typing import Any

import fsspec
import nibabel as nib
import numpy as np
from kedro.io.core import AbstractDataset, DatasetError, get_filepath_str, get_protocol_and_path


class NiftiDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """Loads a NIfTI image as ``{"data": array, "spacing": (dx, dy, dz), "affine": 4x4,
    "axcodes": ("L", "A", "S")}``. Saving is not supported: volumes here are inputs.

    Examples:
        >>> import numpy as np, nibabel as nib, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "v.nii.gz")
        >>> nib.save(nib.Nifti1Image(np.zeros((2, 3, 4), np.int16), np.eye(4)), path)
        >>> NiftiDataset(filepath=path).load()["data"].shape
        (2, 3, 4)
    """

    def __init__(
        self,
        *,
        filepath: str,
        dtype: str | None = None,
        missing_hint: str = "",
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """
        Args:
            filepath: path to the volume, with an optional fsspec protocol prefix.
            dtype: cast the voxel data to this numpy dtype on load (default: as stored).
            missing_hint: appended to the error when the file is absent (where to get it).
        """
        protocol, path = get_protocol_and_path(filepath)
        self._protocol = protocol
        self._filepath = PurePosixPath(path)
        self._fs = fsspec.filesystem(protocol, **(credentials or {}), **(fs_args or {}))
        self._dtype = dtype
        self._missing_hint = missing_hint
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "dtype": self._dtype}

    def _exists(self) -> bool:
        return self._fs.exists(get_filepath_str(self._filepath, self._protocol))

    def load(self) -> dict[str, Any]:
        path = get_filepath_str(self._filepath, self._protocol)
        if not self._fs.exists(path):
            raise DatasetError(f"NIfTI volume not found: {path}. {self._missing_hint}".strip())
        with self._fs.open(path, "rb") as f:
            raw = f.read()
        if str(self._filepath).endswith(".gz"):
            raw = gzip.decompress(raw)
        try:
            image = nib.Nifti1Image.from_stream(io.BytesIO(raw))
        except Exception as err:  # nibabel raises several types for a bad header
            raise DatasetError(f"{path}: not a readable NIfTI-1 volume ({err})") from err
        if self._dtype and np.dtype(self._dtype).kind == "f":
            data = image.get_fdata(dtype=np.dtype(self._dtype))  # no float64 detour
        else:
            data = np.asarray(image.dataobj)
            if self._dtype:
                data = data.astype(self._dtype)
        return {
            "data": data,
            "spacing": tuple(float(s) for s in image.header.get_zooms()[:3]),
            "affine": np.asarray(image.affine),
            "axcodes": tuple(nib.aff2axcodes(image.affine)),
        }

    def save(self, data: dict[str, Any]) -> None:
        raise DatasetError(f"NiftiDataset({self._filepath}) is read-only")
