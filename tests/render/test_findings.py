"""Each simulated finding on the real demo CT: what changes, where, and how."""

import numpy as np
import pytest

from cxr_augment.render import findings as fd
from cxr_augment.render.ct import LUNG_LOBES_LEFT, LUNG_LOBES_RIGHT


def _box(ct, fv):
    return tuple(slice(o, o + n) for o, n in zip(fv.origin, fv.new_hu.shape, strict=True))


def test_pneumothorax_frees_air_at_the_apex_and_keeps_the_rest(chest_ct):
    fv = fd.pneumothorax(chest_ct, "right", "apical", 0.3)
    assert fv.lesion.sum() > 10_000
    # the freed pleural space is pure air: no vessels left in it
    assert np.all(fv.new_hu[fv.lesion] == -1000.0)
    # the air sits above the lung's centre: an apical pneumothorax
    z_air = np.argwhere(fv.lesion)[:, 2].mean()
    z_lung = np.argwhere(fv.support)[:, 2].mean()
    assert z_air > z_lung
    # outside the support nothing moved (FindingVolume checks it; check the bone too)
    unchanged = ~fv.support
    np.testing.assert_array_equal(fv.new_hu[unchanged], fv.old_hu[unchanged])
    # lung mass is conserved: the collapsed lung is denser
    collapsed = fv.support & ~fv.lesion
    assert fv.new_hu[collapsed].mean() > fv.old_hu[collapsed].mean()


def test_pneumothorax_side_and_kind_are_respected(chest_ct):
    fv = fd.pneumothorax(chest_ct, "left", "lateral", 0.3)
    x_air = np.argwhere(fv.lesion)[:, 0].mean() + fv.origin[0]
    x_lung = np.argwhere(chest_ct.mask_of(*LUNG_LOBES_LEFT))[:, 0].mean()
    assert x_air > x_lung, "a left lateral pneumothorax lies toward the patient's left wall (+x)"
    with pytest.raises(ValueError, match="side"):
        fd.pneumothorax(chest_ct, "middle", "apical", 0.3)
    with pytest.raises(ValueError, match="size"):
        fd.pneumothorax(chest_ct, "left", "apical", 0.95)


def test_bigger_pneumothorax_frees_more_air(chest_ct):
    small = fd.pneumothorax(chest_ct, "right", "apical", 0.12).lesion.sum()
    large = fd.pneumothorax(chest_ct, "right", "apical", 0.38).lesion.sum()
    assert large > 2 * small > 0


def test_effusion_is_water_at_the_bottom_of_one_lung(chest_ct):
    fv = fd.pleural_effusion(chest_ct, "right", 0.25, 35.0)
    assert fv.lesion.sum() > 5_000
    assert np.all(fv.new_hu[fv.lesion] == 15.0)
    zs = np.argwhere(fv.lesion)[:, 2]
    lung_z = np.argwhere(chest_ct.mask_of(*LUNG_LOBES_RIGHT))[:, 2]
    assert np.median(zs) < np.percentile(lung_z, 40), "fluid is dependent"
    # the meniscus: away from the posterior wall, fluid reaches higher at the lateral wall
    # than in the middle of the lung
    idx = np.argwhere(fv.lesion)
    y = idx[:, 1]
    idx = idx[(y > np.percentile(y, 50)) & (y < np.percentile(y, 80))]
    x = idx[:, 0]
    lateral = idx[x <= np.percentile(x, 10)][:, 2].max()
    middle = idx[(x > np.percentile(x, 45)) & (x < np.percentile(x, 55))][:, 2].max()
    assert lateral > middle


def test_cardiomegaly_widens_the_heart_to_the_left(chest_ct):
    fv = fd.cardiomegaly(chest_ct, 1.3)
    heart = chest_ct.mask_of("heart", labels=chest_ct.labels[_box(chest_ct, fv)])
    assert fv.lesion.sum() > 0.1 * heart.sum()
    new_left = np.argwhere(fv.lesion)[:, 0].max()
    old_left = np.argwhere(heart)[:, 0].max()
    assert new_left > old_left + 10, "the left heart border moves out (+x)"
    assert np.all(fv.new_hu[fv.lesion] <= 70.0) and np.all(fv.new_hu[fv.lesion] >= 20.0)


def test_opacity_raises_density_inside_its_lobe_only(chest_ct):
    fv = fd.lung_opacity(chest_ct, "lung_lower_lobe_left", 0.5, 0.9, seed=3)
    diff = fv.new_hu - fv.old_hu
    assert diff.min() >= 0.0
    assert diff[fv.lesion].mean() > 200.0
    again = fd.lung_opacity(chest_ct, "lung_lower_lobe_left", 0.5, 0.9, seed=3)
    np.testing.assert_array_equal(again.new_hu, fv.new_hu)
    other = fd.lung_opacity(chest_ct, "lung_lower_lobe_left", 0.5, 0.9, seed=4)
    assert not np.array_equal(other.lesion, fv.lesion)
