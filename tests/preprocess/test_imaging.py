"""Strict decoding rules and the lung masks."""

import io

import cv2
import numpy as np
import pytest
from matplotlib.path import Path as MplPath
from PIL import Image

from cxr_augment.preprocess import imaging
from cxr_augment.preprocess.imaging import DecodeError

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (40, 30), dtype=np.uint8)


def _png(array: np.ndarray) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


def test_8bit_grey_png_is_lossless_and_jpeg_close():
    np.testing.assert_array_equal(imaging.decode_grey(_png(GREY)), GREY)
    smooth = np.tile(np.arange(30, dtype=np.uint8) * 8, (40, 1))
    jpg = cv2.imencode(".jpg", smooth, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    assert np.abs(imaging.decode_grey(jpg).astype(int) - smooth).max() <= 3


def test_16bit_rules():
    img16 = GREY.astype(np.uint16) * 257
    np.testing.assert_array_equal(imaging.decode_grey(_png(img16), "full_range"), GREY)
    twelve = GREY.astype(np.uint16) * 16  # 12-bit data in 16 bits
    full = imaging.decode_grey(_png(twelve), "full_range")
    assert full.max() <= 16  # dark under the full-range rule
    stretched = imaging.decode_grey(_png(twelve), "min_max")
    assert stretched.min() == 0 and stretched.max() == 255
    with pytest.raises(ValueError, match="16-bit rule"):
        imaging.decode_grey(_png(img16), "other")


def test_rgb_uses_bt601_luma_and_rgba_is_composited_on_black():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 2] = 200  # red in OpenCV's BGR order
    assert imaging.decode_grey(_png(rgb))[0, 0] == round(0.299 * 200)
    rgba = np.dstack([rgb, np.full((4, 4), 128, np.uint8)])
    assert abs(int(imaging.decode_grey(_png(rgba))[0, 0]) - round(0.299 * 200 * 128 / 255)) <= 1


def test_grey_alpha_png_from_pil_is_read():
    buf = io.BytesIO()
    Image.fromarray(np.dstack([GREY, np.full(GREY.shape, 255, np.uint8)]), "LA").save(buf, "PNG")
    np.testing.assert_array_equal(imaging.decode_grey(buf.getvalue()), GREY)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (cv2.imencode(".jpg", GREY)[1].tobytes()[:-200], "truncated JPEG"),
        (_png(GREY)[:-30], "truncated PNG"),
        (b"GIF89a not an image at all" * 10, "undecodable"),
    ],
)
def test_bad_files_raise_with_a_reason(data, reason):
    with pytest.raises(DecodeError, match=reason):
        imaging.decode_grey(data)


def test_floating_point_images_are_an_unsupported_mode():
    tiff = cv2.imencode(".tiff", RNG.random((8, 8)).astype(np.float32))[1].tobytes()
    with pytest.raises(DecodeError, match="unsupported mode"):
        imaging.decode_grey(tiff)


def _bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """scikit-image's bilinear resampling on pixel centres, edges replicated (OpenCV's
    INTER_LINEAR rule), without anti-aliasing."""
    from skimage.transform import resize as sk_resize

    return sk_resize(
        image.astype(float), (height, width), order=1, mode="edge", anti_aliasing=False,
        preserve_range=True,
    )  # fmt: skip


def test_resize_shapes():
    assert imaging.resize(GREY, 20, 15).shape == (20, 15)
    assert imaging.resize(GREY, 80, 60).shape == (80, 60)
    assert imaging.resize(GREY, 40, 30) is GREY


def test_resize_averages_areas_when_shrinking_by_two_or_more():
    half = imaging.resize(GREY, 20, 15)
    assert half.dtype == np.uint8
    blocks = GREY.reshape(20, 2, 15, 2).mean(axis=(1, 3))
    assert np.abs(half - blocks).max() <= 0.5  # the 2 x 2 block mean, rounded
    img = RNG.integers(0, 256, (36, 30), dtype=np.uint8)
    third = imaging.resize(img, 12, 10)
    assert np.abs(third - img.reshape(12, 3, 10, 3).mean(axis=(1, 3))).max() <= 0.5
    # a 2x shrink of one side is enough for area averaging (not the bilinear's sampling)
    tall = imaging.resize(GREY, 20, 30)
    np.testing.assert_allclose(tall, GREY.reshape(20, 2, 30).mean(axis=1), atol=0.5)


def test_resize_crops_the_centre_when_at_most_two_percent_larger():
    img = RNG.integers(0, 256, (102, 101), dtype=np.uint8)
    # 102 <= 100 * 1.02 and 101 <= 100 * 1.02: no resampling, the centred 100 x 100
    crop = imaging.resize(img, 100, 100)
    np.testing.assert_array_equal(crop, img[1:101, 0:100])
    # 103 rows is more than 2 % larger: resampled (bilinear, under a 2x shrink)
    big = RNG.integers(0, 256, (103, 100), dtype=np.uint8)
    out = imaging.resize(big, 100, 100)
    assert not np.array_equal(out, big[1:101])
    assert np.abs(out - _bilinear(big, 100, 100)).max() <= 1
    # larger in one side, smaller in the other: no crop either
    mixed = imaging.resize(img, 100, 102)
    assert np.abs(mixed - _bilinear(img, 100, 102)).max() <= 1


@pytest.mark.parametrize("shape", [(80, 60), (50, 45), (30, 20)])
def test_resize_is_bilinear_otherwise(shape):
    # enlarging, or shrinking by less than 2 in both sides: bilinear, within a grey level of
    # scikit-image's (OpenCV's fixed-point weights and rounding)
    out = imaging.resize(GREY, *shape)
    assert out.shape == shape and out.dtype == np.uint8
    assert np.abs(out - _bilinear(GREY, *shape)).max() <= 1


MASK_PARAMS = {
    "reference_size": [389, 320],
    "square_size": [300, 300],
    "right_lung": [[0.16, 0.17], [0.40, 0.09], [0.47, 0.45], [0.40, 0.78], [0.13, 0.76]],
    "joint_right_half": [[0.5, 0.12], [0.27, 0.09], [0.10, 0.50], [0.25, 0.81], [0.5, 0.74]],
}


def test_square_mask_is_300_by_300_centred_on_389_by_320():
    hide = imaging.mask_region("square", 389, 320, MASK_PARAMS)
    rows, cols = np.flatnonzero(hide.any(1)), np.flatnonzero(hide.any(0))
    assert (len(rows), len(cols)) == (300, 300)
    assert rows[0] == (389 - 300) // 2 and cols[0] == (320 - 300) // 2
    assert hide.sum() == 300 * 300


def test_polygon_masks_cover_what_their_polygons_say():
    h, w = 389, 320
    hide = imaging.mask_region("separate", h, w, MASK_PARAMS)
    yy, xx = np.mgrid[0:h, 0:w]
    pts = np.stack([xx.ravel() / (w - 1), yy.ravel() / (h - 1)], 1)
    right = MplPath(MASK_PARAMS["right_lung"]).contains_points(pts).reshape(h, w)
    left = np.fliplr(right)
    expected = right | left
    disagree = (hide != expected).mean()
    assert disagree < 0.01  # only the boundary pixels differ
    np.testing.assert_array_equal(hide, np.fliplr(hide))  # mirrored about the midline
    joint = imaging.mask_region("joint", h, w, MASK_PARAMS)
    inverted = imaging.mask_region("inverted_joint", h, w, MASK_PARAMS)
    np.testing.assert_array_equal(inverted, ~joint)
    assert (joint & expected).sum() > 0.9 * expected.sum()  # the joint polygon holds both lungs
    assert not imaging.mask_region("none", h, w, MASK_PARAMS).any()


def test_apply_mask_zeros_the_hidden_region_only():
    hide = imaging.mask_region("square", 40, 30, MASK_PARAMS)
    out = imaging.apply_mask(GREY, hide)
    assert (out[hide] == 0).all()
    np.testing.assert_array_equal(out[~hide], GREY[~hide])
    with pytest.raises(ValueError, match="mask must be one of"):
        imaging.mask_region("circle", 4, 4, MASK_PARAMS)
