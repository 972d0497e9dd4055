"""The per-image renderer: determinism, locality of findings, devices, annotations."""

import dataclasses

import cv2
import numpy as np
import pytest

from cxr_augment.render.radiograph import ImageSpec, influence_radius_px, render

H, W = 390, 320


def _spec(**kw) -> ImageSpec:
    base = dict(
        view="frontal",
        projection="PA",
        seed=5,
        anatomy_seed=6,
        device_seed=7,
        yaw_deg=0.0,
        dose=50000.0,
    )
    return ImageSpec(**{**base, **kw})


def test_same_spec_same_bytes_other_seed_other_noise(tiny_atlas):
    spec = _spec(marker="R", text=("PA",))
    a = render(tiny_atlas, spec, H, W).image
    b = render(tiny_atlas, spec, H, W).image
    assert a.dtype == np.uint8 and a.shape == (H, W)
    assert a.tobytes() == b.tobytes()
    c = render(tiny_atlas, dataclasses.replace(spec, seed=6), H, W).image
    assert not np.array_equal(a, c)
    # JPEG encoding is deterministic too
    assert cv2.imencode(".jpg", a)[1].tobytes() == cv2.imencode(".jpg", b)[1].tobytes()


def test_image_looks_like_a_chest_radiograph(tiny_atlas):
    img = render(tiny_atlas, _spec(), H, W).image.astype(float)
    # lungs (dark) either side of a bright mediastinum, in the upper half
    band = img[H // 4 : H // 2]
    cols = band.mean(axis=0)
    centre = cols[W // 2 - 15 : W // 2 + 15].mean()
    right_lung = cols[W // 5 : W // 3].mean()
    left_lung = cols[2 * W // 3 : 4 * W // 5].mean()
    assert centre > right_lung + 30 and centre > left_lung + 30
    # the abdomen below the diaphragm is brighter than the lungs
    assert img[int(0.85 * H)].mean() > band.mean()
    # uses the grey range
    assert np.percentile(img, 99) - np.percentile(img, 1) > 150


@pytest.mark.parametrize(
    "kind", ["pneumothorax", "pleural_effusion", "cardiomegaly", "lung_opacity", "consolidation"]
)
@pytest.mark.parametrize("view", ["frontal", "lateral"])
def test_finding_changes_pixels_only_where_its_mask_projects(tiny_atlas, kind, view):
    key = tiny_atlas.entries_of(kind)[0].spec.key
    spec = _spec(
        view=view,
        projection="PA" if view == "frontal" else "LL",
        yaw_deg=4.0,
        roll_deg=3.0,
        scale_si=1.2,
    )
    without = render(tiny_atlas, spec, H, W).image.astype(int)
    out = render(tiny_atlas, dataclasses.replace(spec, findings=(key,)), H, W, with_masks=True)
    changed = out.image.astype(int) != without
    support = out.supports[key]
    r = influence_radius_px(spec)
    reach = cv2.dilate(support.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0
    assert changed.sum() > 200, "the finding must be visible"
    assert not (changed & ~reach).any(), "pixels changed outside the finding's projected support"
    # most changes sit on the projected support itself, not in the processing halo
    assert (changed & support).sum() > 0.5 * changed.sum()
    lesion = out.lesions[key]
    assert lesion.any() and not (lesion & ~reach).any()


def test_devices_draw_where_their_mask_says_and_brighten(tiny_atlas):
    spec = _spec(projection="AP")
    without = render(tiny_atlas, spec, H, W).image.astype(int)
    for kind in (
        "endotracheal_tube",
        "nasogastric_tube",
        "central_line",
        "chest_drain",
        "pacemaker",
    ):
        out = render(tiny_atlas, dataclasses.replace(spec, devices=(kind,)), H, W, with_masks=True)
        mask = out.lesions[kind]
        changed = out.image.astype(int) != without
        r = influence_radius_px(spec)
        reach = cv2.dilate(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0
        assert mask.sum() > 50, kind
        assert not (changed & ~reach).any(), kind
        assert out.image[mask].astype(int).mean() > without[mask].mean(), kind


def test_device_course_is_shared_by_the_views_of_a_study(tiny_atlas):
    spec = _spec(devices=("central_line",))
    a = render(tiny_atlas, spec, H, W, with_masks=True).lesions["central_line"]
    b = render(tiny_atlas, dataclasses.replace(spec, seed=99), H, W, with_masks=True)
    np.testing.assert_array_equal(a, b.lesions["central_line"])  # same device_seed
    c = render(tiny_atlas, dataclasses.replace(spec, device_seed=8), H, W, with_masks=True)
    assert not np.array_equal(a, c.lesions["central_line"])


def test_markers_are_burned_in_near_the_edges(tiny_atlas):
    spec = _spec()
    plain = render(tiny_atlas, spec, H, W).image.astype(int)
    marked = render(
        tiny_atlas, dataclasses.replace(spec, marker="R", text=("PORTABLE", "AP")), H, W
    )
    diff = np.argwhere(marked.image.astype(int) != plain)
    assert len(diff) > 30
    near_edge = (diff[:, 1] < 0.3 * W) | (diff[:, 1] > 0.7 * W)
    assert near_edge.mean() > 0.95
    assert (diff[:, 0] < 0.35 * H).mean() > 0.95
