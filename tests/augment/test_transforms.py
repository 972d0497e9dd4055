"""Each transform against an independent reference for the parameters it drew (thesis 4.4
values): scikit-image and torchvision for the geometry, PIL for colouring, cv2.GaussianBlur
for blurring, scikit-image's random_noise for the noise statistics."""

import math

import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageEnhance
from scipy import stats as sps
from skimage import transform as skt
from skimage.util import random_noise
from torchvision.transforms import InterpolationMode

from cxr_augment.augment import transforms as tf

RNG = np.random.default_rng(0)
IMG = cv2.GaussianBlur(RNG.integers(0, 256, (97, 80), dtype=np.uint8), (5, 5), 2)
BILINEAR = InterpolationMode.BILINEAR


def _draws(t, n=400):
    return [t.randomize(IMG) for _ in range(n)]


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image)[None].float()


def _grey_levels_apart(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - np.rint(b)).max())


def test_rotation_is_skimage_rotate_by_the_drawn_angle():
    d = np.array([p["degrees"] for p in _draws(tf.Rotation(seed=1), 2000)])
    assert d.min() >= -90 and d.max() <= 90
    assert d.min() < -85 and d.max() > 85 and abs(d.mean()) < 5
    t = tf.Rotation(seed=2)
    for _ in range(3):
        out, p = t(IMG)
        # counter-clockwise about the image centre, bilinear, edge (nearest) fill
        ref = skt.rotate(IMG, p["degrees"], order=1, mode="edge", preserve_range=True)
        assert _grey_levels_apart(out, ref) <= 1


def test_flips_are_torchvision_flips_half_each():
    t = tf.Flip(seed=3)
    axes = [p["axis"] for p in _draws(t, 2000)]
    assert abs(axes.count("vertical") / 2000 - 0.5) < 0.05
    for _ in range(4):
        out, p = t(IMG)
        ref = TF.vflip if p["axis"] == "vertical" else TF.hflip
        np.testing.assert_array_equal(out, ref(torch.from_numpy(IMG)[None])[0].numpy())


def test_translation_is_skimage_shift_with_zero_fill():
    t = tf.Translation(seed=4)
    for p in _draws(t):
        assert abs(p["dx"]) <= 0.2 * 80 and abs(p["dy"]) <= 0.2 * 97
    for _ in range(3):
        out, p = t(IMG)
        shift = skt.AffineTransform(translation=(p["dx"], p["dy"]))
        ref = skt.warp(IMG, shift.inverse, order=1, mode="constant", cval=0, preserve_range=True)
        assert _grey_levels_apart(out, ref) <= 1


def test_shear_angles_are_0_to_15_degrees_with_an_optional_sign():
    d = np.array([p["degrees"] for p in _draws(tf.Shear(seed=5), 1000)])
    assert d.min() >= 0 and d.max() <= 15 and d.min() < 0.5 and d.max() > 14.5
    assert abs(d.mean() - 7.5) < 0.5
    signed = np.array([p["degrees"] for p in _draws(tf.Shear(random_sign=True, seed=5), 1000)])
    assert np.abs(signed).max() <= 15 and abs((signed < 0).mean() - 0.5) < 0.06


@pytest.mark.parametrize("random_sign", [False, True])
def test_shear_is_torchvision_affine_shear(random_sign):
    t = tf.Shear(random_sign=random_sign, seed=6)
    for _ in range(3):
        out, p = t(IMG)
        # torchvision's x-shear by s maps x to x - tan(s) * y: ours by a is its shear by -a
        kw = {"angle": 0.0, "translate": [0, 0], "scale": 1.0, "shear": [-p["degrees"], 0.0]}
        ref = TF.affine(_tensor(IMG), interpolation=BILINEAR, **kw)[0].numpy()
        inside = TF.affine(torch.ones(1, 97, 80), interpolation=BILINEAR, **kw)[0].numpy() == 1
        assert inside.mean() > 0.85  # torchvision fills with 0, we replicate: compare inside
        assert _grey_levels_apart(out[inside], ref[inside]) <= 1


def test_crop_is_torchvision_resized_crop_and_pad_mode_is_a_centred_crop():
    t = tf.RandomCrop(seed=6)
    p = t.randomize(IMG)
    # 256 x 256 of the thesis's 389 x 320, scaled to this image
    assert (p["height"], p["width"]) == (round(256 * 97 / 389), round(256 * 80 / 320))
    tops = {t.randomize(IMG)["top"] for _ in range(200)}
    assert min(tops) == 0 and max(tops) == 97 - p["height"]
    for _ in range(3):
        out, p = t(IMG)
        box = (p["top"], p["left"], p["height"], p["width"])
        ref = TF.resized_crop(_tensor(IMG), *box, [97, 80], BILINEAR, antialias=False)
        assert _grey_levels_apart(out, ref[0].numpy()) <= 1
        padded = tf.RandomCrop(mode="pad").apply(IMG, p)
        crop = TF.crop(torch.from_numpy(IMG)[None], *box)
        np.testing.assert_array_equal(padded, TF.center_crop(crop, [97, 80])[0].numpy())
    with pytest.raises(ValueError, match="mode must be one of"):
        tf.RandomCrop(mode="stretch")


def _pil_colour(image: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    bright = ImageEnhance.Brightness(Image.fromarray(image)).enhance(brightness)
    return np.asarray(ImageEnhance.Contrast(bright).enhance(contrast))


@pytest.mark.parametrize(
    "image",
    [IMG, cv2.add(IMG, 90), cv2.subtract(IMG, 60)],
    ids=["mid-grey", "bright", "dark"],
)
def test_colouring_is_pil_brightness_then_contrast(image):
    t = tf.Colour(seed=9)
    for p in _draws(t):
        assert 1 <= p["brightness"] <= 2 and 1 <= p["contrast"] <= 2
    cases = [{"brightness": 2.0, "contrast": 2.0}, {"brightness": 1.0, "contrast": 1.0}]
    cases += [t.randomize(image) for _ in range(20)]
    for p in cases:
        ref = _pil_colour(image, p["brightness"], p["contrast"])
        out = t.apply(image, p)
        assert _grey_levels_apart(out, ref) <= 1, p
        assert (out != ref).mean() < 0.001, p


def test_colouring_tables_are_pil_for_any_factors_including_clipping():
    # every grey level (a ramp), and images whose brightened grey saturates; factors beyond
    # the thesis's range clip at 0 (a contrast below 0 or a darkening) and at 255
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    images = [ramp, IMG, cv2.add(IMG, 90), cv2.subtract(IMG, 60)]
    rng = np.random.default_rng(21)
    cases = [(0.0, 1.0), (-0.5, 1.0), (1.0, 0.0), (2.0, 2.0), (3.0, 1.5), (1.5, -1.0), (0.4, 3.0)]
    cases += [(rng.uniform(0, 3), rng.uniform(-1, 3)) for _ in range(40)]
    for image in images:
        for brightness, contrast in cases:
            p = {"brightness": float(brightness), "contrast": float(contrast)}
            out = tf.Colour().apply(image, p)
            np.testing.assert_array_equal(out, _pil_colour(image, **p), err_msg=str(p))


def test_colouring_draws_two_generator_uniforms_and_reads_any_layout():
    t = tf.Colour(brightness=(1.0, 2.0), contrast=(0.5, 3.0), seed=4)
    rng = np.random.default_rng(4)
    for _ in range(200):  # the same values as Generator.uniform, in the same order
        want = {"brightness": rng.uniform(1.0, 2.0), "contrast": rng.uniform(0.5, 3.0)}
        assert t.randomize(IMG) == want
    p = t.randomize(IMG)
    view = cv2.add(IMG, 40)[::-1, ::2]  # not contiguous
    np.testing.assert_array_equal(t.apply(view, p), _pil_colour(np.ascontiguousarray(view), **p))
    with pytest.raises(TypeError, match="uint8"):
        t.apply(IMG.astype(np.float32), p)


def test_blur_is_cv2_gaussian_blur_11_by_11_sigma_10_at_thesis_size():
    big = cv2.resize(IMG, (320, 389))
    t = tf.Blur(seed=8)
    p = t.randomize(big)
    assert (p["kernel"], p["sigma"]) == (11, 10.0) and not t.random
    assert _grey_levels_apart(t.apply(big, p), cv2.GaussianBlur(big, (11, 11), 10.0)) <= 1
    small = t.randomize(IMG)
    assert small["kernel"] == 3 and small["sigma"] == pytest.approx(2.5)
    # the fixed filter: two copies of one image are the same image
    assert t(big)[0].tobytes() == tf.Blur(seed=9)(big)[0].tobytes()


def test_blur_with_a_sigma_range_draws_sigma_per_image():
    big = cv2.resize(IMG, (320, 389))
    t = tf.Blur(sigma=[1.0, 10.0], seed=8)
    assert t.random
    sigmas = [t.randomize(big)["sigma"] for _ in range(300)]
    assert 1.0 <= min(sigmas) < 1.5 and 9.5 < max(sigmas) <= 10.0
    for _ in range(3):
        out, p = t(big)
        ref = cv2.GaussianBlur(big, (p["kernel"], p["kernel"]), p["sigma"])
        assert p["kernel"] == 11 and _grey_levels_apart(out, ref) <= 1


def test_gaussian_noise_matches_skimage_random_noise_statistics():
    t = tf.Noise(seed=7)
    kinds = [p["kind"] for p in _draws(t, 2000)]
    assert abs(kinds.count("gaussian") / 2000 - 0.5) < 0.05
    amps = [p["amplitude"] for p in _draws(t, 500) if p["kind"] == "gaussian"]
    assert 0 <= min(amps) and max(amps) <= 30
    flat = np.full((300, 300), 128, np.uint8)
    p = {"kind": "gaussian", "amplitude": 20.0, "noise_seed": 1}
    out = t.apply(flat, p).astype(float) - 128
    # thesis 4.4: mean 0, variance 0.5 times the amplitude squared, in grey levels
    std = math.sqrt(0.5) * 20
    ref = random_noise(flat, mode="gaussian", var=(std / 255) ** 2, rng=1) * 255 - 128
    assert out.std() == pytest.approx(std, rel=0.03)
    assert out.std() == pytest.approx(ref.std(), rel=0.03)
    assert abs(out.mean()) < 0.2 and abs(ref.mean()) < 0.2


def test_pepper_and_salt_fractions_match_skimage_random_noise():
    flat = np.full((300, 300), 128, np.uint8)
    pepper = tf.Noise().apply(flat, {"kind": "pepper", "fraction": 0.02, "noise_seed": 2})
    ref = random_noise(flat, mode="pepper", amount=0.02, rng=2)
    assert set(np.unique(pepper)) == {0, 128}
    assert (pepper == 0).mean() == pytest.approx((ref == 0).mean(), abs=0.002)
    sp = tf.SaltPepper().apply(flat, {"noise_seed": 3})
    ref = random_noise(flat, mode="s&p", amount=0.02, salt_vs_pepper=0.5, rng=3)
    assert set(np.unique(sp)) == {0, 128, 255}
    assert (sp == 0).mean() == pytest.approx((ref == 0).mean(), abs=0.002)
    assert (sp == 255).mean() == pytest.approx((ref == 1).mean(), abs=0.002)


@pytest.mark.parametrize("name", sorted(set(tf.METHODS) - {"mixup"}))
def test_same_seed_same_bytes_other_seed_other_image(name):
    a, pa = tf.build(name, seed=3)(IMG)
    b, pb = tf.build(name, seed=3)(IMG)
    assert a.dtype == np.uint8 and a.shape == IMG.shape
    assert pa == pb and a.tobytes() == b.tobytes()
    others = [tf.build(name, seed=s)(IMG)[0] for s in range(4, 9)]
    varies = any(not np.array_equal(a, o) for o in others)
    assert varies == tf.build(name).random


def test_the_padded_warp_is_the_plain_warp():
    # a rotation by 50 degrees sends a third of the output outside the source
    m = np.vstack([cv2.getRotationMatrix2D((39.5, 48.0), 50.0, 1.0), [0, 0, 1]])
    for border in (cv2.BORDER_REPLICATE, cv2.BORDER_CONSTANT):
        plain = cv2.warpAffine(IMG, m[:2], (80, 97), flags=cv2.INTER_LINEAR, borderMode=border)
        assert _grey_levels_apart(tf._warp(IMG, m, border), plain) <= 1


def test_mixup_mixes_images_and_labels():
    other = 255 - IMG
    out, y = tf.mixup(IMG, other, 1.0, 0.0, 0.25)
    assert y == 0.25
    assert np.abs(out.astype(float) - (0.25 * IMG + 0.75 * other)).max() <= 0.5 + 1e-9
    t = tf.Mixup(alpha=0.4, seed=5)
    for _ in range(20):  # the drawn lambdas, as the augmented sets use them
        lam = t.randomize(IMG)["lambda"]
        out, y = tf.mixup(IMG, other, 1.0, 0.0, lam)
        ref = lam * IMG.astype(float) + (1 - lam) * other
        assert out.dtype == np.uint8 and y == pytest.approx(lam)
        # rounded to the nearest grey level (the first term is mixed in float32)
        assert np.abs(out - ref).max() <= 0.5 + 1e-4
        assert np.mean(out == np.rint(ref)) > 0.999


@pytest.mark.parametrize("alpha", [0.4, 2.0])
def test_mixup_lambda_is_beta_alpha_alpha(alpha):
    t = tf.Mixup(alpha=alpha, seed=0)
    lam = np.array([t.randomize(IMG)["lambda"] for _ in range(2000)])
    assert lam.min() >= 0 and lam.max() <= 1
    assert sps.kstest(lam, sps.beta(alpha, alpha).cdf).pvalue > 0.01
    # 2,000 draws tell Beta(0.4, 0.4) (U-shaped) from Beta(2, 2) (a hump) and from uniform
    wrong = 2.0 if alpha == 0.4 else 0.4
    assert sps.kstest(lam, sps.beta(wrong, wrong).cdf).pvalue < 1e-6
    assert sps.kstest(lam, "uniform").pvalue < 1e-6


def _bilateral(image: np.ndarray, diameter: int, sigma_colour: float, sigma_space: float):
    """The bilateral filter from its definition: a disc of radius diameter // 2, Gaussian
    weights in distance and in grey level, reflected (101) borders."""
    r = diameter // 2
    h, w = image.shape
    img = image.astype(float)
    pad = np.pad(img, r, mode="reflect")
    num, den = np.zeros((h, w)), np.zeros((h, w))
    for i in range(-r, r + 1):
        for j in range(-r, r + 1):
            if i * i + j * j > r * r:
                continue
            nb = pad[r + i : r + i + h, r + j : r + j + w]
            wgt = np.exp(-(i * i + j * j) / (2 * sigma_space**2))
            wgt = wgt * np.exp(-((nb - img) ** 2) / (2 * sigma_colour**2))
            num += wgt * nb
            den += wgt
    return num / den


def test_bilateral_is_the_bilateral_filter_with_a_scaled_diameter():
    t = tf.Bilateral()
    # diameter 9 at 320 pixels wide, scaled with the width, at least 3
    for shape, diameter in (((97, 80), 3), ((200, 160), 4), ((389, 320), 9)):
        img = cv2.resize(IMG, shape[::-1])
        out, p = t(img)
        assert p == {"diameter": diameter} and out.shape == shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, cv2.bilateralFilter(img, diameter, 75.0, 75.0))
        assert _grey_levels_apart(out, _bilateral(img, diameter, 75.0, 75.0)) <= 1
        assert not np.array_equal(out, img)
    assert not t.random and t(IMG)[0].tobytes() == t(IMG)[0].tobytes()


def test_scaling_is_skimage_warp_about_the_centre_by_the_drawn_factor():
    t = tf.Scaling(seed=9)
    f = np.array([t.randomize(IMG)["factor"] for _ in range(2000)])
    assert f.min() >= 0.8 and f.max() <= 1.2  # thesis 4.4: 0.8-1.2
    assert sps.kstest(f, sps.uniform(0.8, 0.4).cdf).pvalue > 0.01
    h, w = IMG.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    for _ in range(4):
        out, p = t(IMG)
        k = p["factor"]
        zoom = np.array([[k, 0, cx - k * cx], [0, k, cy - k * cy], [0, 0, 1]])
        zoom = skt.AffineTransform(matrix=zoom)  # x' = centre + k (x - centre)
        ref = skt.warp(IMG, zoom.inverse, order=1, mode="edge", preserve_range=True)
        assert _grey_levels_apart(out, ref) <= 1
        assert not np.array_equal(out, IMG)


def _displacement(t: tf.Elastic, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """The displacement field an elastic transform applied, read back from grey ramps (grey
    2 x and 2 y: a pixel sampled from x + dx reads 2 x + 2 dx), away from the borders."""
    h, w = IMG.shape
    ramp_x = np.tile(np.arange(w, dtype=np.uint8) * 2, (h, 1))
    ramp_y = np.tile(np.arange(h, dtype=np.uint8)[:, None] * 2, (1, w))
    dx = (t.apply(ramp_x, params).astype(float) - ramp_x) / 2
    dy = (t.apply(ramp_y, params).astype(float) - ramp_y) / 2
    return dx[10:-10, 10:-10], dy[10:-10, 10:-10]


def test_elastic_is_a_smooth_displacement_scaled_by_alpha():
    params = tf.Elastic(seed=1).randomize(IMG)
    # no amplitude: the image unchanged, to the bit
    np.testing.assert_array_equal(tf.Elastic(alpha=0.0).apply(IMG, params), IMG)
    out, _ = tf.Elastic(seed=1)(IMG)
    assert out.shape == IMG.shape and out.dtype == np.uint8 and not np.array_equal(out, IMG)
    # the same field scaled by alpha: the mean displacement doubles with alpha
    mean = {}
    for alpha in (60.0, 120.0, 240.0):
        dx, dy = _displacement(tf.Elastic(alpha=alpha), params)
        mean[alpha] = np.hypot(dx, dy).mean()
    assert mean[60.0] > 0.5, mean
    assert mean[120.0] / mean[60.0] == pytest.approx(2, rel=0.1), mean
    assert mean[240.0] / mean[120.0] == pytest.approx(2, rel=0.1), mean
    # smoothed by sigma: displacements 3 pixels apart agree more the larger sigma is
    lag = []
    for sigma in (4.0, 12.0, 24.0):
        dx, _ = _displacement(tf.Elastic(alpha=240.0, sigma=sigma), params)
        lag.append(np.corrcoef(dx[:, :-3].ravel(), dx[:, 3:].ravel())[0, 1])
    assert lag[0] < 0.4 < lag[1] < lag[2], lag


def test_salt_pepper_changes_pixels_and_unknown_methods_are_refused():
    out, _ = tf.build("salt_pepper", seed=1)(IMG)
    assert out.shape == IMG.shape and not np.array_equal(out, IMG)
    with pytest.raises(ValueError, match="unknown augmentation methods"):
        tf.build(["twirl"])
    with pytest.raises(ValueError, match="settings for unknown methods"):
        tf.build(["rotation", "noise"], {"blur": {"sigma": 2}})


def test_the_separable_shift_is_the_warp_of_the_shift_matrix():
    t = tf.Translation(seed=12)
    for _ in range(4):
        p = t.randomize(IMG)
        warped = tf._warp(IMG, t.matrix(IMG, p), cv2.BORDER_CONSTANT)
        assert _grey_levels_apart(t.apply(IMG, p), warped) <= 1
    assert (t.apply(IMG, {"dx": 200.0, "dy": 0.0}) == 0).all()  # shifted out entirely
