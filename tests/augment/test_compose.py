"""A composition of methods (thesis 4.5): each applies with probability p, drawn per image."""

import cv2
import numpy as np
import pytest

from cxr_augment.augment import transforms as tf

IMG = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (97, 80), np.uint8), (5, 5), 2)
FIVE = ["rotation", "shearing", "flipping", "noise", "blurring"]  # Table 12's composition


def _applied(c: tf.Compose, seeds) -> np.ndarray:
    out = []
    for s in seeds:
        params = c.set_random_state(s).randomize(IMG)
        out.append([params[t.name]["applied"] for t in c.transforms])
    return np.array(out)


def test_each_method_applies_with_probability_one_half_and_never_none():
    c = tf.build(FIVE)
    assert isinstance(c, tf.Compose) and c.p == 0.5 and c.at_least_one
    on = _applied(c, range(3000))
    assert on.any(axis=1).all()  # an image with no method is drawn again
    # conditioned on at least one of five: 0.5 / (1 - 0.5 ** 5) = 0.516 each
    np.testing.assert_allclose(on.mean(axis=0), 0.5 / (1 - 0.5**5), atol=0.03)
    assert 2.4 < on.sum(axis=1).mean() < 2.75  # about 2.58 methods per image


def test_without_the_redraw_some_images_get_no_method():
    c = tf.build(FIVE, {"compose": {"at_least_one": False}})
    on = _applied(c, range(3000))
    np.testing.assert_allclose(on.mean(axis=0), 0.5, atol=0.03)
    assert (~on.any(axis=1)).mean() == pytest.approx(1 / 32, abs=0.01)


def test_p_one_applies_every_method_every_time():
    c = tf.build(FIVE, {"compose": {"p": 1.0}})
    assert _applied(c, range(50)).all()
    out, params = c.set_random_state(3)(IMG)
    assert all(params[n]["applied"] and len(params[n]) > 1 for n in FIVE)


def test_a_single_method_always_applies():
    t = tf.build("rotation", {"compose": {"p": 0.1}})
    assert isinstance(t, tf.Rotation)
    for s in range(20):
        out, _ = t.set_random_state(s)(IMG)
        assert not np.array_equal(out, IMG)


def test_only_the_applied_methods_run_in_order_with_their_parameters():
    c = tf.build(["noise", "colouring", "blurring"], seed=11)
    for s in range(12):
        params = c.set_random_state(s).randomize(IMG)
        expected = IMG
        for t in c.transforms:
            p = params[t.name]
            if p["applied"]:
                expected = t.apply(expected, p)
            else:
                assert p == {"applied": False}  # nothing drawn for a method that did not fire
        np.testing.assert_array_equal(c.apply(IMG, params), expected)


def test_same_seed_same_bytes_and_the_coins_depend_on_the_seed():
    a = tf.build(FIVE, seed=4)(IMG)
    b = tf.build(FIVE, seed=4)(IMG)
    assert a[1] == b[1] and a[0].tobytes() == b[0].tobytes()
    flags = {tuple(r) for r in _applied(tf.build(FIVE), range(40))}
    assert len(flags) > 10


def test_the_folded_warp_is_close_to_the_methods_one_after_another():
    c = tf.build(["rotation", "shearing", "flipping", "noise", "blurring"], {"compose": {"p": 1}})
    params = c.set_random_state(4).randomize(IMG)
    params["noise"] = {"applied": True, "kind": "pepper", "fraction": 0.0, "noise_seed": 0}
    folded = c.apply(IMG, params).astype(float)
    seq = IMG
    for t in c.transforms:
        seq = t.apply(seq, params[t.name])
    inner = (slice(15, -15), slice(15, -15))  # borders differ: one fill versus several
    assert np.abs(folded[inner] - seq.astype(float)[inner]).mean() < 3.0


def test_crop_and_pad_does_not_fold_into_the_warp():
    c = tf.build(["rotation", "cropping"], {"compose": {"p": 1}, "cropping": {"mode": "pad"}})
    out, params = c.set_random_state(2)(IMG)
    p = params["cropping"]
    rotated = c.transforms[0].apply(IMG, params["rotation"])
    expected = tf.RandomCrop(mode="pad").apply(rotated, p)
    np.testing.assert_array_equal(out, expected)
    y, x = (97 - p["height"]) // 2, (80 - p["width"]) // 2
    assert (out[:y] == 0).all() and (out[:, :x] == 0).all()


def test_bad_compositions_are_refused():
    with pytest.raises(ValueError, match="p must be in"):
        tf.build(FIVE, {"compose": {"p": 0.0}})
    with pytest.raises(ValueError, match="p must be in"):
        tf.build(FIVE, {"compose": {"p": 1.5, "at_least_one": False}})
    with pytest.raises(ValueError, match="each method once"):
        tf.build(["rotation", "rotation"])


def test_a_lone_geometric_method_takes_its_own_path_and_a_run_one_warp():
    c = tf.build(["rotation", "flipping", "translation", "noise"], {"compose": {"p": 1}})
    params = c.set_random_state(5).randomize(IMG)
    alone = {**params, "rotation": {"applied": False}, "translation": {"applied": False}}
    alone["noise"] = {"applied": False}
    flip = c.transforms[1]
    np.testing.assert_array_equal(c.apply(IMG, alone), flip.apply(IMG, params["flipping"]))
    # rotation then flip then shift: one warp with the shift's zero fill
    both = {**params, "noise": {"applied": False}}
    m = c.transforms[0].matrix(IMG, params["rotation"])
    m = (
        c.transforms[2].matrix(IMG, params["translation"])
        @ flip.matrix(IMG, params["flipping"])
        @ m
    )
    np.testing.assert_array_equal(c.apply(IMG, both), tf._warp(IMG, m, cv2.BORDER_CONSTANT))
