"""The batched tensor augmentations (the GPU path), run on the CPU."""

import numpy as np
import pytest
import torch

from cxr_augment.transforms_torch import SUPPORTED, BatchAugment

X = torch.rand(6, 1, 40, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", SUPPORTED)
def test_each_method_keeps_shape_and_range_and_is_seeded(method):
    aug = BatchAugment([method])
    a = aug(X.clone(), torch.Generator().manual_seed(1))
    b = aug(X.clone(), torch.Generator().manual_seed(1))
    assert a.shape == X.shape and float(a.min()) >= 0 and float(a.max()) <= 1 + 1e-6
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_flips_are_exact():
    out = BatchAugment(["flipping"])(X, torch.Generator().manual_seed(2))
    for i in range(len(X)):
        v, h = torch.flip(X[i], dims=[1]), torch.flip(X[i], dims=[2])
        assert torch.allclose(out[i], v, atol=1e-5) or torch.allclose(out[i], h, atol=1e-5)


def test_blur_matches_an_explicit_gaussian():
    x = torch.zeros(1, 1, 389, 320)
    x[0, 0, 194, 160] = 1.0
    out = BatchAugment(["blurring"])(x, torch.Generator())
    r = np.arange(11) - 5
    k = np.exp(-0.5 * (r / 10.0) ** 2)
    k /= k.sum()
    np.testing.assert_allclose(out[0, 0, 189:200, 155:166].numpy(), np.outer(k, k), atol=1e-6)


def test_rotation_by_the_drawn_angle_preserves_the_centre_and_mass_roughly():
    x = torch.zeros(1, 1, 41, 41)
    x[0, 0, 15:26, 15:26] = 1.0
    out = BatchAugment(["rotation"])(x, torch.Generator().manual_seed(5))
    assert out[0, 0, 20, 20] == pytest.approx(1.0, abs=1e-4)
    assert float(out.sum()) == pytest.approx(float(x.sum()), rel=0.15)


def test_unsupported_methods_are_refused():
    with pytest.raises(ValueError, match="no batched version"):
        BatchAugment(["elastic"])
