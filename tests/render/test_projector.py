import numpy as np
import pytest

from cxr_augment.render.projector import (
    Crop,
    Geometry,
    combine_slabs,
    paste,
    project,
    project_slabs,
    tight,
)

GEO = Geometry((40, 30, 16), (0.7, 0.7, 1.4))


def _full(crop: Crop, width: int) -> np.ndarray:
    out = np.zeros((GEO.atlas_rows, width), np.float64)
    paste(out, Crop(crop.row0, crop.col0 + 20, crop.data.astype(np.float64)))
    return out


@pytest.mark.parametrize("view", ["frontal", "lateral"])
def test_projection_integrates_the_volume(view):
    vol = np.zeros(GEO.shape, np.float32)
    vol[10:20, 5:15, 4:10] = 0.02  # 0.02 / mm
    img = project(vol, GEO, view, 0.0).data
    # the line integral through 10 voxels of 0.7 mm at 0.02 / mm
    assert img.max() == pytest.approx(0.02 * 10 * 0.7, rel=1e-5)
    # integrating the image over its area gives the volume integral (rows resampled to 0.7 mm)
    total = img.sum() * 0.7 * GEO.pixel_mm
    assert total == pytest.approx(vol.sum() * 0.7 * 0.7 * 1.4, rel=0.03)


def test_orientation_follows_radiographic_convention():
    vol = np.zeros(GEO.shape, np.float32)
    vol[2, 15, 14] = 1.0  # patient's right (low x), near the top slice (high z)
    vol[20, 27, 1] = 1.0  # anterior (high y), near the bottom
    front = project(vol, GEO, "frontal", 0.0).data
    r, c = np.unravel_index(front.argmax(), front.shape)
    assert c == 2, "the patient's right must be on the viewer's left"
    assert r < front.shape[0] // 2, "superior must be up"
    lat = project(vol, GEO, "lateral", 0.0)
    cols = np.flatnonzero(lat.data.max(axis=0) > 0) + lat.col0
    assert cols.min() == GEO.shape[1] - 1 - 27, "anterior must be on the viewer's left"


@pytest.mark.parametrize("view", ["frontal", "lateral"])
@pytest.mark.parametrize("yaw", [-7.0, 3.0])
def test_one_voxel_slabs_equal_the_exact_sheared_projection(view, yaw):
    rng = np.random.default_rng(0)
    vol = rng.random(GEO.shape).astype(np.float32)
    exact = _full(project(vol, GEO, view, yaw, pad=8), 80)
    slabs = project_slabs(vol, GEO, view, slab_mm=0.7)
    assembled = _full(combine_slabs(slabs, GEO, view, yaw, pad=8), 80)
    np.testing.assert_allclose(assembled, exact, atol=1e-4)


def test_thick_slabs_err_by_at_most_half_a_slab_of_shear():
    rng = np.random.default_rng(1)
    vol = np.zeros(GEO.shape, np.float32)
    vol[15:25, :, 5:12] = rng.random((10, 30, 7))
    exact = _full(project(vol, GEO, "frontal", 8.0, pad=8), 80)
    approx = _full(
        combine_slabs(project_slabs(vol, GEO, "frontal", 5.6), GEO, "frontal", 8.0, 8), 80
    )
    assert approx.sum() == pytest.approx(exact.sum(), rel=1e-5)  # mass is conserved
    # a column shift of at most 4 voxels * tan(8 deg) < 1 px: profiles stay close
    assert np.abs(approx.sum(0) - exact.sum(0)).max() < 0.25 * exact.sum(0).max()


def test_sub_volume_projects_where_the_full_volume_does():
    rng = np.random.default_rng(2)
    vol = np.zeros(GEO.shape, np.float32)
    vol[8:18, 6:20, 3:11] = rng.random((10, 14, 8))
    for view in ("frontal", "lateral"):
        full = _full(project(vol, GEO, view, 5.0, pad=6), 80)
        sub = project(vol[8:18, 6:20, 3:11], GEO, view, 5.0, origin=(8, 6, 3), pad=6)
        np.testing.assert_allclose(_full(sub, 80), full, atol=1e-5)


def test_tight_crops_to_nonzero_entries():
    c = Crop(5, 7, np.pad(np.ones((2, 3), np.float32), ((4, 1), (2, 6))))
    t = tight(c)
    assert (t.row0, t.col0, t.data.shape) == (9, 9, (2, 3))
