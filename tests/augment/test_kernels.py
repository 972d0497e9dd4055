"""The compiled kernels against OpenCV, PIL and a float64 computation of the same maps."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from cxr_augment.augment import kernels

RNG = np.random.default_rng(5)
# a radiograph-like image: smooth structure plus fine noise, every grey level present
BASE = cv2.GaussianBlur(RNG.integers(0, 256, (389, 320), dtype=np.uint8), (9, 9), 3)
IMG = cv2.add(
    cv2.normalize(BASE, None, 0, 235, cv2.NORM_MINMAX), RNG.integers(0, 20, BASE.shape, np.uint8)
)


def _apart(a, b) -> float:
    return float(np.abs(a.astype(np.float64) - b).max())


@pytest.mark.parametrize(
    ("ksize", "sigma", "shape"),
    [
        (11, 10.0, (389, 320)),  # the thesis's blur at its size
        (11, 10.0, (390, 321)),  # column pass: 2 rows after the sweeps of four
        (11, 3.0, (387, 320)),  # 3 rows after them
        (3, 2.5, (97, 80)),  # the demo's size: radius 1
        (7, 1.2, (194, 160)),
        (15, 5.0, (64, 48)),
    ],
)
def test_blur_is_the_separable_gaussian(ksize, sigma, shape):
    image = cv2.resize(IMG, shape[::-1])
    k = cv2.getGaussianKernel(ksize, sigma)
    out = kernels.gaussian_blur(image, k.astype(np.float32))
    assert out.dtype == np.uint8 and out.shape == image.shape
    # the exact filter, in float64, rounded: ours is that to float32's rounding
    exact = cv2.sepFilter2D(image.astype(np.float64), -1, k, k, borderType=cv2.BORDER_REFLECT_101)
    assert _apart(out, exact) <= 0.5 + 1e-3
    assert _apart(out, cv2.GaussianBlur(image, (ksize, ksize), sigma)) <= 1


def test_blur_reads_views_and_falls_back_where_the_mirror_is_too_short():
    k = cv2.getGaussianKernel(11, 10.0).astype(np.float32)
    view = IMG[10:200:2, 5:300]  # not contiguous
    ref = cv2.GaussianBlur(np.ascontiguousarray(view), (11, 11), 10.0)
    assert _apart(kernels.gaussian_blur(view, k), ref) <= 1
    tiny = IMG[:4, :30]  # 4 rows: fewer than the radius 5 needs beyond the edge row
    np.testing.assert_array_equal(
        kernels.gaussian_blur(tiny, k),
        cv2.sepFilter2D(tiny, -1, k, k, borderType=cv2.BORDER_REFLECT_101),
    )


def test_blur_gives_the_same_bytes_every_time():
    k = cv2.getGaussianKernel(11, 10.0).astype(np.float32)
    assert kernels.gaussian_blur(IMG, k).tobytes() == kernels.gaussian_blur(IMG.copy(), k).tobytes()


def _bilinear_exact(image, width, height):
    """OpenCV's INTER_LINEAR map in float64, written out plainly."""

    def taps(n_out, n_in):
        x = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        x = np.clip(x, 0, n_in - 1)
        i0 = np.floor(x).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, x - i0

    (y0, y1, fy), (x0, x1, fx) = taps(height, image.shape[0]), taps(width, image.shape[1])
    im = image.astype(np.float64)
    rows = im[y0] * (1 - fy)[:, None] + im[y1] * fy[:, None]
    return rows[:, x0] * (1 - fx) + rows[:, x1] * fx


@pytest.mark.parametrize(
    ("crop", "size"),
    [
        ((60, 30, 256, 256), (320, 389)),  # the thesis's crop back to its size
        ((0, 0, 64, 64), (80, 97)),  # the demo's
        ((3, 7, 101, 77), (77, 101)),  # the same size
        ((0, 0, 389, 320), (160, 194)),  # smaller
        ((5, 5, 1, 40), (80, 97)),  # a single row
    ],
)
def test_resize_is_opencvs_bilinear(crop, size):
    top, left, h, w = crop
    view = IMG[top : top + h, left : left + w]
    out = kernels.resize_linear(view, *size)
    assert out.shape == size[::-1] and out.dtype == np.uint8
    assert _apart(out, _bilinear_exact(view, *size)) <= 0.5 + 1e-3
    assert _apart(out, cv2.resize(view, size, interpolation=cv2.INTER_LINEAR)) <= 1


def _pil(image, brightness, contrast):
    im = ImageEnhance.Brightness(Image.fromarray(image)).enhance(brightness)
    return np.asarray(ImageEnhance.Contrast(im).enhance(contrast))


def test_colour_is_pils_brightness_then_contrast_exactly():
    view = IMG[::3, 1::2]  # not contiguous
    rng = np.random.default_rng(2)
    cases = [(1.0, 1.0), (2.0, 2.0), (0.0, 1.0), (1.5, -1.0), (0.4, 3.0)]
    cases += [tuple(rng.uniform(0.5, 2.5, 2)) for _ in range(20)]
    for b, c in cases:
        for image in (IMG, view, cv2.add(IMG, 90)):
            np.testing.assert_array_equal(
                kernels.colour(image, b, c),
                _pil(np.ascontiguousarray(image), b, c),
                err_msg=str((b, c)),
            )


@pytest.mark.skipif(not kernels._VALIGN, reason="the valignd row pass needs AVX-512F")
@pytest.mark.parametrize("r", range(1, 9))
def test_the_valignd_row_pass_gives_the_plain_loops_floats(r):
    plain, used = kernels._blur_passes(r).row_passes
    assert used is not plain
    k = cv2.getGaussianKernel(2 * r + 1, r * 0.9).astype(np.float32).ravel()
    for shape in ((389, 320), (40, 321), (9, 16), (12, 17), (20, 2 * r + 3), (30, 47)):
        image = RNG.integers(0, 256, shape, dtype=np.uint8)
        a = np.full((shape[0] + 2 * r, shape[1]), np.nan, np.float32)
        b = a.copy()
        plain(image, k, a)
        used(image, k, b)
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32), err_msg=str(shape))


@pytest.mark.parametrize("shape", [(389, 320), (97, 80), (5, 389), (3, 1), (1, 63), (2, 130)])
def test_flip_is_opencvs_horizontal_flip(shape):
    image = RNG.integers(0, 256, shape, dtype=np.uint8)
    for im in (image, image[:, ::-1][:, 1:]):  # and a view, not contiguous
        out = kernels.flip_horizontal(im)
        assert out.dtype == np.uint8 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, cv2.flip(np.ascontiguousarray(im), 1))


def test_without_a_writable_cache_the_kernels_compile_in_the_process_and_say_so(tmp_path):
    # numba finds no cache folder for a plain source file when only its zip locator is
    # allowed: what a read-only install run without a writable home meets. numba itself then
    # refuses cache=True at import; the kernels must still load, give the same bytes and say
    # how to keep a cache.
    script = (
        "import logging, sys, numpy as np\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from cxr_augment.augment import kernels\n"
        "img = np.load(sys.argv[1])\n"
        "np.save(sys.argv[2], kernels.colour(img, 1.7, 1.3))\n"
    )
    np.save(tmp_path / "img.npy", IMG)
    env = {**os.environ, "NUMBA_CACHE_LOCATOR_CLASSES": "ZipCacheLocator"}
    env.pop("NUMBA_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "img.npy"), str(tmp_path / "out.npy")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "no locator available" in done.stderr and "NUMBA_CACHE_DIR" in done.stderr
    assert np.array_equal(np.load(tmp_path / "out.npy"), kernels.colour(IMG, 1.7, 1.3))
    assert kernels._CACHE  # this process caches as usual
