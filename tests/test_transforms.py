"""Each transform's statistics and determinism (thesis 4.4 values)."""

import math

import cv2
import numpy as np
import pytest

from cxr_augment import transforms as tf

RNG = np.random.default_rng(0)
IMG = cv2.GaussianBlur(RNG.integers(0, 256, (97, 80), dtype=np.uint8), (5, 5), 2)


def _draws(t, n=400):
    return [t.randomize(IMG) for _ in range(n)]


def test_rotation_angles_cover_plus_minus_90_uniformly():
    d = np.array([p["degrees"] for p in _draws(tf.Rotation(seed=1), 2000)])
    assert d.min() >= -90 and d.max() <= 90
    assert d.min() < -85 and d.max() > 85 and abs(d.mean()) < 5
    out, p = tf.Rotation(seed=2)(IMG)
    ref = cv2.warpAffine(
        IMG,
        cv2.getRotationMatrix2D(((80 - 1) / 2, (97 - 1) / 2), p["degrees"], 1.0),
        (80, 97),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    assert np.abs(out.astype(int) - ref).max() <= 1


def test_flips_are_exact_permutations_half_each():
    t = tf.Flip(seed=3)
    axes = [p["axis"] for p in _draws(t, 2000)]
    assert abs(axes.count("vertical") / 2000 - 0.5) < 0.05
    np.testing.assert_array_equal(t.apply(IMG, {"axis": "vertical"}), IMG[::-1])
    np.testing.assert_array_equal(t.apply(IMG, {"axis": "horizontal"}), IMG[:, ::-1])
    assert sorted(t.apply(IMG, {"axis": "vertical"}).ravel()) == sorted(IMG.ravel())


def test_translation_within_a_fifth_with_zero_fill():
    t = tf.Translation(seed=4)
    for p in _draws(t):
        assert abs(p["dx"]) <= 0.2 * 80 and abs(p["dy"]) <= 0.2 * 97
    out = t.apply(IMG, {"dx": 10.0, "dy": 0.0})
    assert (out[:, :10] == 0).all()
    np.testing.assert_array_equal(out[:, 10:], IMG[:, :-10])


def test_shear_angles_within_15_degrees():
    d = np.array([p["degrees"] for p in _draws(tf.Shear(seed=5), 1000)])
    assert np.abs(d).max() <= 15 and np.abs(d).max() > 14 and (d < 0).any() and (d > 0).any()


def test_crop_is_256_of_389_by_320_scaled_and_resized_back():
    t = tf.RandomCrop(seed=6)
    p = t.randomize(IMG)
    assert (p["height"], p["width"]) == (round(256 * 97 / 389), round(256 * 80 / 320))
    out = t.apply(IMG, p)
    assert out.shape == IMG.shape


def test_gaussian_noise_has_the_stated_variance():
    t = tf.Noise(seed=7)
    flat = np.full((400, 400), 128, np.uint8)
    out = t.apply(flat, {"kind": "gaussian", "amplitude": 20.0, "noise_seed": 1})
    # variance 0.5 times amplitude^2: std = sqrt(0.5) * 20
    assert (out.astype(float) - 128).std() == pytest.approx(math.sqrt(0.5) * 20, rel=0.03)
    kinds = [p["kind"] for p in _draws(t, 2000)]
    assert abs(kinds.count("gaussian") / 2000 - 0.5) < 0.05
    amps = [p["amplitude"] for p in _draws(t, 500) if p["kind"] == "gaussian"]
    assert 0 <= min(amps) and max(amps) <= 30
    pepper = t.apply(flat, {"kind": "pepper", "fraction": 0.02, "noise_seed": 2})
    assert (pepper == 0).mean() == pytest.approx(0.02, abs=0.003)
    assert set(np.unique(pepper)) <= {0, 128}


def test_blur_is_an_11_by_11_sigma_10_gaussian_at_thesis_size():
    big = cv2.resize(IMG, (320, 389))
    t = tf.Blur(seed=8)
    p = t.randomize(big)
    assert (p["kernel"], p["sigma"]) == (11, 10.0)
    impulse = np.zeros((41, 41), np.uint8)
    impulse[20, 20] = 255
    k1 = cv2.getGaussianKernel(11, 10.0)
    expected = np.rint(255 * (k1 @ k1.T))
    out = t.apply(impulse, p)[15:26, 15:26].astype(float)
    assert np.abs(out - expected).max() <= 1
    small = t.randomize(IMG)
    assert small["kernel"] == 3 and small["sigma"] == pytest.approx(2.5)


def test_colouring_factors_in_one_to_two_brighten_and_stretch():
    t = tf.Colour(seed=9)
    for p in _draws(t):
        assert 1 <= p["brightness"] <= 2 and 1 <= p["contrast"] <= 2
    out = t.apply(IMG, {"brightness": 1.3, "contrast": 1.0})
    assert out.astype(float).mean() == pytest.approx(min(IMG.mean() * 1.3, 255), rel=0.05)
    stretched = t.apply(IMG, {"brightness": 1.0, "contrast": 1.5})
    assert stretched.std() > IMG.std()


@pytest.mark.parametrize("name", sorted(set(tf.METHODS) - {"mixup"}))
def test_same_seed_same_bytes_other_seed_other_image(name):
    a, pa = tf.build(name, seed=3)(IMG)
    b, pb = tf.build(name, seed=3)(IMG)
    assert a.dtype == np.uint8 and a.shape == IMG.shape
    assert pa == pb and a.tobytes() == b.tobytes()
    others = [tf.build(name, seed=s)(IMG)[0] for s in range(4, 9)]
    varies = any(not np.array_equal(a, o) for o in others)
    assert varies == tf.METHODS[name].random


def test_compose_folds_geometry_into_one_warp_close_to_sequential():
    c = tf.build(["rotation", "shearing", "flipping", "noise", "blurring"], seed=4)
    params = c.randomize(IMG)
    params["noise"] = {"kind": "pepper", "fraction": 0.0, "noise_seed": 0}
    folded = c.apply(IMG, params).astype(float)
    seq = IMG
    for t in c.transforms:
        seq = t.apply(seq, params[t.name])
    inner = (slice(15, -15), slice(15, -15))  # borders differ: one fill versus several
    assert np.abs(folded[inner] - seq.astype(float)[inner]).mean() < 3.0
    again = tf.build(["rotation", "shearing", "flipping", "noise", "blurring"], seed=4)
    assert (
        again(IMG)[0].tobytes()
        == tf.build(["rotation", "shearing", "flipping", "noise", "blurring"], seed=4)(IMG)[
            0
        ].tobytes()
    )


def test_mixup_mixes_images_and_labels():
    other = 255 - IMG
    out, y = tf.mixup(IMG, other, 1.0, 0.0, 0.25)
    assert y == 0.25
    assert np.abs(out.astype(float) - (0.25 * IMG + 0.75 * other)).max() <= 0.5 + 1e-9
    lam = [tf.Mixup(alpha=0.4, seed=s).randomize(IMG)["lambda"] for s in range(200)]
    assert 0 <= min(lam) and max(lam) <= 1


def test_elastic_and_bilateral_keep_shape_and_change_pixels():
    for name in ("elastic", "bilateral", "scaling", "salt_pepper"):
        out, _ = tf.build(name, seed=1)(IMG)
        assert out.shape == IMG.shape and not np.array_equal(out, IMG)
    with pytest.raises(ValueError, match="unknown augmentation methods"):
        tf.build(["twirl"])
