"""The batched tensor augmentations (the on-the-fly path), run on the CPU, against the same
references as the NumPy path where the sampling allows."""

import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageEnhance

from cxr_augment.augment.transforms_torch import SUPPORTED, BatchAugment

X = torch.rand(6, 1, 40, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", SUPPORTED)
def test_each_method_keeps_shape_and_range_and_is_seeded(method):
    aug = BatchAugment([method])
    a = aug(X.clone(), torch.Generator().manual_seed(1))
    b = aug(X.clone(), torch.Generator().manual_seed(1))
    assert a.shape == X.shape and float(a.min()) >= 0 and float(a.max()) <= 1 + 1e-6
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, X)  # a single method applies to every sample


def test_flips_are_exact():
    out = BatchAugment(["flipping"])(X, torch.Generator().manual_seed(2))
    for i in range(len(X)):
        v, h = TF.vflip(X[i]), TF.hflip(X[i])
        assert torch.allclose(out[i], v, atol=1e-5) or torch.allclose(out[i], h, atol=1e-5)


def test_blur_is_cv2_gaussian_blur():
    img = cv2.GaussianBlur(
        np.random.default_rng(1).integers(0, 256, (389, 320), np.uint8), (5, 5), 2
    )
    x = torch.from_numpy(img)[None, None].float() / 255
    out = BatchAugment(["blurring"])(x, torch.Generator())[0, 0].numpy() * 255
    assert np.abs(out - cv2.GaussianBlur(img, (11, 11), 10.0)).max() <= 1.0


def test_colouring_is_pil_brightness_then_contrast_on_grey_levels():
    imgs = np.random.default_rng(2).integers(0, 256, (4, 30, 30), dtype=np.uint8)
    x = torch.from_numpy(imgs)[:, None].float() / 255
    aug = BatchAugment(["colouring"])
    g = torch.Generator().manual_seed(3)
    out = (aug(x, g)[:, 0] * 255).round().numpy()
    g = torch.Generator().manual_seed(3)  # the same draws, read back
    aug.applied(4, g, "cpu")
    bright = torch.rand(4, generator=g) + 1
    contrast = torch.rand(4, generator=g) + 1
    for i in range(4):
        im = ImageEnhance.Brightness(Image.fromarray(imgs[i])).enhance(float(bright[i]))
        ref = np.asarray(ImageEnhance.Contrast(im).enhance(float(contrast[i])))
        assert np.abs(out[i] - ref).max() <= 1


def test_shear_leans_one_way_unless_signed():
    x = torch.zeros(8, 1, 41, 41)
    x[:, :, :, 20] = 1.0  # a vertical line through the centre
    bottom_shift = []
    for sign in (False, True):
        aug = BatchAugment(["shearing"], {"shearing": {"random_sign": sign}})
        out = aug(x, torch.Generator().manual_seed(4))
        # the line's column in the bottom row: right of the centre for a positive shear
        bottom_shift.append(out[:, 0, 40].argmax(dim=1).float() - 20)
    assert (bottom_shift[0] >= 0).all() and (bottom_shift[0] > 0).any()
    assert (bottom_shift[0] <= 20 * np.tan(np.radians(15)) + 1).all()
    assert (bottom_shift[1] < 0).any() and (bottom_shift[1] > 0).any()


def test_composition_applies_each_method_to_about_half_the_samples():
    aug = BatchAugment(["rotation", "noise", "blurring", "colouring"])
    on = aug.applied(4000, torch.Generator().manual_seed(5), "cpu")
    assert on.any(dim=1).all()
    np.testing.assert_allclose(on.float().mean(0).numpy(), 0.5 / (1 - 0.5**4), atol=0.03)
    every = BatchAugment(["rotation", "noise"], {"compose": {"p": 1.0}})
    assert every.applied(10, torch.Generator(), "cpu").all()


def test_unsupported_methods_are_refused():
    with pytest.raises(ValueError, match="no batched version"):
        BatchAugment(["elastic"])
    with pytest.raises(ValueError, match="mode resize"):
        BatchAugment(["cropping"], {"cropping": {"mode": "pad"}})
