"""How close a copy stays to its parent: against plain NumPy on images already at the
comparison size (where the area resize is the identity)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxr_augment.augment.closeness import copy_closeness


class Store(dict):
    def get(self, key):  # a TensorStore's read, by key
        return self[key]


def _images(n: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size), dtype=np.uint8) for _ in range(n)]


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(float) - b.astype(float)) ** 2)))


def _set(parents: list[str], targets: list[float], copies: dict[str, list[np.ndarray]]):
    rows, images = [], Store()
    for parent, target in zip(parents, targets, strict=True):
        for i, img in enumerate(copies.get(parent, [])):
            key = f"g/{parent}#{i}"
            rows.append({"key": key, "parent_key": parent, "copy": i, "target": target})
            images[key] = img
    return pd.DataFrame(rows), images


def test_copies_equal_to_their_parents_are_at_distance_0_and_nearest_them():
    real = Store(zip("abcd", _images(4), strict=True))
    manifest, copies = _set(list("abcd"), [1.0, 1.0, 0.0, 0.0],
                            {k: [real[k], real[k]] for k in "abcd"})  # fmt: skip
    out = copy_closeness(real, manifest, copies, size=32)
    assert out["status"] == "ok" and out["copies"] == 8 and out["parents"] == 4
    assert out["rms_to_parent"] == {"mean": 0.0, "median": 0.0}
    assert out["parent_nearest_share"] == 1.0
    gaps = [min(_rms(real[k], real[o]) for o in "abcd" if o != k) for k in "abcd"]
    assert out["parent_spacing"] == pytest.approx(np.median(gaps), rel=1e-5)
    assert out["rms_to_nearest_other"]["mean"] == pytest.approx(np.mean(gaps), rel=1e-5)
    assert (
        out["by_class"]["positive"]["copies"] == 4 and out["by_class"]["negative"]["parents"] == 2
    )
    assert out["how"] == "transformed copies" and out["strengths"] == []
    assert out["comparison_size"] == "32 x 32"


def test_a_copy_that_shows_another_image_is_counted_as_not_keeping_its_parent():
    real = Store(zip("abc", _images(3, seed=1), strict=True))
    noise = np.random.default_rng(2).normal(0, 5, (32, 32))
    near_a = np.clip(real["a"] + noise, 0, 255).astype(np.uint8)
    manifest, copies = _set(list("abc"), [1.0, 1.0, 0.0],
                            {"a": [near_a], "b": [real["c"]], "c": [real["c"]]})  # fmt: skip
    manifest["strength"] = 0.5
    out = copy_closeness(real, manifest, copies, size=32)
    assert out["parent_nearest_share"] == pytest.approx(2 / 3)
    want = [_rms(near_a, real["a"]), _rms(real["c"], real["b"]), 0.0]
    assert out["rms_to_parent"]["mean"] == pytest.approx(np.mean(want), rel=1e-5)
    assert out["by_class"]["positive"]["parent_nearest_share"] == 0.5
    assert out["by_class"]["negative"]["rms_to_parent"]["median"] == pytest.approx(0.0, abs=1e-3)
    assert out["how"] == "edit, strength 0.5" and out["strengths"] == [0.5]


def test_images_of_another_size_are_compared_at_the_comparison_size():
    import cv2

    big = _images(2, size=64, seed=3)
    real = Store(a=big[0], b=big[1])
    manifest, copies = _set(["a", "b"], [1.0, 0.0], {"a": [big[1]], "b": [big[1]]})
    out = copy_closeness(real, manifest, copies, size=16)
    small = [cv2.resize(x, (16, 16), interpolation=cv2.INTER_AREA) for x in big]
    assert out["rms_to_parent"]["mean"] == pytest.approx(_rms(small[0], small[1]) / 2, rel=1e-5)


def test_draws_have_no_parent_and_one_parent_has_no_other():
    out = copy_closeness(Store(), pd.DataFrame({"key": ["g/0"], "target": [1.0]}), Store())
    assert out["status"] == "no parents" and out["copies"] == 0
    real = Store(a=_images(1)[0])
    manifest, copies = _set(["a"], [1.0], {"a": [real["a"]]})
    out = copy_closeness(real, manifest, copies)
    assert out["rms_to_nearest_other"] == {"mean": None, "median": None}
    assert out["parent_spacing"] is None and out["parent_nearest_share"] == 1.0
