"""Traditional augmentations (thesis 3.2.1, 4.4), one class per method, on uint8 grey images.

Each transform owns a ``numpy.random.Generator``: ``set_random_state(seed)`` seeds it,
``randomize()`` draws this call's parameters, ``apply(image, params)`` is deterministic.
``__call__`` does both and returns ``(image, params)``, so the parameters drawn can be stored
beside the image. The thesis's values are the defaults; sizes given in pixels are for its
389 x 320 images and scale with the image (``reference_size``).

``Compose`` applies a list in order; consecutive geometric transforms (rotation, shear,
translation, scaling, flips) are folded into a single affine warp, so an image is resampled
once, not once per method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

REFERENCE_SIZE = (389, 320)  # (H, W) the thesis's pixel sizes refer to
_RAMP = np.arange(256, dtype=np.float32)


def _scale(image: np.ndarray) -> float:
    return image.shape[1] / REFERENCE_SIZE[1]


class Transform:
    """Base class: a seeded random transform of a uint8 (H, W) image."""

    name = "identity"
    affine = False  # geometric transforms expose ``matrix`` and fold together in Compose
    random = True  # False: the same output every time (a fixed filter)

    def __init__(self, seed: int = 0) -> None:
        self.set_random_state(seed)

    def set_random_state(self, seed: int | np.random.Generator) -> Transform:
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return self

    def randomize(self, image: np.ndarray) -> dict:
        return {}

    def apply(self, image: np.ndarray, params: dict) -> np.ndarray:
        return image

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, dict]:
        params = self.randomize(image)
        return self.apply(image, params), params


# --- geometric -------------------------------------------------------------------------------


class AffineTransform(Transform):
    affine = True
    border = cv2.BORDER_REPLICATE  # the thesis's "nearest" fill

    def matrix(self, image: np.ndarray, params: dict) -> np.ndarray:
        raise NotImplementedError

    def apply(self, image: np.ndarray, params: dict) -> np.ndarray:
        m = self.matrix(image, params)
        h, w = image.shape
        return cv2.warpAffine(
            image, m[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=self.border, borderValue=0
        )


def _about_centre(image: np.ndarray, linear: np.ndarray) -> np.ndarray:
    h, w = image.shape
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    m = np.eye(3)
    m[:2, :2] = linear
    m[:2, 2] = c - linear @ c
    return m


class Rotation(AffineTransform):
    """Rotation by an angle uniform in [-max_degrees, max_degrees] (thesis: 90), nearest fill."""

    name = "rotation"

    def __init__(self, max_degrees: float = 90.0, seed: int = 0) -> None:
        self.max_degrees = max_degrees
        super().__init__(seed)

    def randomize(self, image):
        return {"degrees": float(self.rng.uniform(-self.max_degrees, self.max_degrees))}

    def matrix(self, image, params):
        a = math.radians(params["degrees"])
        return _about_centre(
            image, np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        )


class Flip(AffineTransform):
    """A vertical or a horizontal flip, with probability 0.5 each (thesis 4.4)."""

    name = "flipping"

    def __init__(self, p_vertical: float = 0.5, seed: int = 0) -> None:
        self.p_vertical = p_vertical
        super().__init__(seed)

    def randomize(self, image):
        return {"axis": "vertical" if self.rng.random() < self.p_vertical else "horizontal"}

    def matrix(self, image, params):
        s = np.diag([1.0, -1.0]) if params["axis"] == "vertical" else np.diag([-1.0, 1.0])
        return _about_centre(image, s)

    def apply(self, image, params):  # exact permutation of pixels, no resampling
        return cv2.flip(image, 0 if params["axis"] == "vertical" else 1)


class Translation(AffineTransform):
    """A shift of up to ``max_fraction`` of the height and width (thesis: 0.2), zero fill."""

    name = "translation"
    border = cv2.BORDER_CONSTANT

    def __init__(self, max_fraction: float = 0.2, seed: int = 0) -> None:
        self.max_fraction = max_fraction
        super().__init__(seed)

    def randomize(self, image):
        h, w = image.shape
        f = self.max_fraction
        return {"dx": float(self.rng.uniform(-f, f) * w), "dy": float(self.rng.uniform(-f, f) * h)}

    def matrix(self, image, params):
        m = np.eye(3)
        m[0, 2], m[1, 2] = params["dx"], params["dy"]
        return m


class Shear(AffineTransform):
    """A horizontal shear by an angle in [0, max_degrees] (thesis: 15), either direction,
    nearest fill."""

    name = "shearing"

    def __init__(self, max_degrees: float = 15.0, seed: int = 0) -> None:
        self.max_degrees = max_degrees
        super().__init__(seed)

    def randomize(self, image):
        sign = 1.0 if self.rng.random() < 0.5 else -1.0
        return {"degrees": sign * float(self.rng.uniform(0.0, self.max_degrees))}

    def matrix(self, image, params):
        return _about_centre(
            image, np.array([[1.0, math.tan(math.radians(params["degrees"]))], [0.0, 1.0]])
        )


class Scaling(AffineTransform):
    """Zoom in or out by a factor in [min, max] about the centre, nearest fill."""

    name = "scaling"

    def __init__(self, min_factor: float = 0.8, max_factor: float = 1.2, seed: int = 0) -> None:
        self.min_factor, self.max_factor = min_factor, max_factor
        super().__init__(seed)

    def randomize(self, image):
        return {"factor": float(self.rng.uniform(self.min_factor, self.max_factor))}

    def matrix(self, image, params):
        return _about_centre(image, np.eye(2) * params["factor"])


class RandomCrop(AffineTransform):
    """A random crop (thesis: 256 x 256 of 389 x 320), resized back to the image size.

    As a map it is a scaling plus a shift, so in a Compose it folds into the one warp.
    """

    name = "cropping"

    def __init__(self, size: tuple[int, int] = (256, 256), seed: int = 0) -> None:
        self.size = tuple(size)
        super().__init__(seed)

    def randomize(self, image):
        h, w = image.shape
        ch = min(h, max(2, round(self.size[0] * h / REFERENCE_SIZE[0])))
        cw = min(w, max(2, round(self.size[1] * w / REFERENCE_SIZE[1])))
        return {
            "top": int(self.rng.integers(0, h - ch + 1)),
            "left": int(self.rng.integers(0, w - cw + 1)),
            "height": ch,
            "width": cw,
        }

    def matrix(self, image, params):
        # cv2.resize's pixel-centre convention: x_out = (x_in - left + 0.5) * w / cw - 0.5
        h, w = image.shape
        sx, sy = w / params["width"], h / params["height"]
        m = np.eye(3)
        m[0, 0], m[1, 1] = sx, sy
        m[0, 2] = (0.5 - params["left"]) * sx - 0.5
        m[1, 2] = (0.5 - params["top"]) * sy - 0.5
        return m

    def apply(self, image, params):
        top, left = params["top"], params["left"]
        crop = image[top : top + params["height"], left : left + params["width"]]
        return cv2.resize(crop, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)


# --- intensity ------------------------------------------------------------------------------


class Noise(Transform):
    """Gaussian noise (mean 0, variance 0.5, times an amplitude uniform in [0, 30]) or pepper
    noise, with probability 0.5 each (thesis 4.4)."""

    name = "noise"

    def __init__(
        self,
        p_gaussian: float = 0.5,
        variance: float = 0.5,
        max_amplitude: float = 30.0,
        pepper_fraction: float = 0.02,
        seed: int = 0,
    ) -> None:
        self.p_gaussian, self.variance = p_gaussian, variance
        self.max_amplitude, self.pepper_fraction = max_amplitude, pepper_fraction
        super().__init__(seed)

    def randomize(self, image):
        if self.rng.random() < self.p_gaussian:
            return {
                "kind": "gaussian",
                "amplitude": float(self.rng.uniform(0, self.max_amplitude)),
                "noise_seed": int(self.rng.integers(2**63)),
            }
        return {
            "kind": "pepper",
            "fraction": self.pepper_fraction,
            "noise_seed": int(self.rng.integers(2**63)),
        }

    def apply(self, image, params):
        if params["kind"] == "gaussian":
            std = math.sqrt(self.variance) * params["amplitude"]
            # OpenCV's generator, seeded per image right here (its state is per thread, and
            # nothing runs between the seeding and the draw): five times numpy's speed
            cv2.setRNGSeed(int(params["noise_seed"] % (2**31 - 1)))
            noise = np.empty(image.shape, np.float32)
            cv2.randn(noise, 0.0, std)
            return cv2.add(image, noise, dtype=cv2.CV_8U)  # rounds and saturates
        return _pepper(image, params["fraction"], params["noise_seed"], salt=False)


def _pepper(image: np.ndarray, fraction: float, seed: int, salt: bool) -> np.ndarray:
    """Set ``fraction`` of the pixels (drawn with replacement) to 0, or half to 0 and half
    to 255 with ``salt``: drawing the positions costs a fraction of a per-pixel draw."""
    rng = np.random.default_rng(seed)
    n = int(round(fraction * image.size))
    idx = rng.integers(0, image.size, n)
    out = image.copy()
    flat = out.reshape(-1)
    if salt:
        flat[idx[: n // 2]] = 0
        flat[idx[n // 2 :]] = 255
    else:
        flat[idx] = 0
    return out


class SaltPepper(Transform):
    """Impulse noise: a fraction of pixels set to 0 and as many to 255."""

    name = "salt_pepper"

    def __init__(self, fraction: float = 0.02, seed: int = 0) -> None:
        self.fraction = fraction
        super().__init__(seed)

    def randomize(self, image):
        return {"noise_seed": int(self.rng.integers(2**63))}

    def apply(self, image, params):
        return _pepper(image, self.fraction, params["noise_seed"], salt=True)


class Blur(Transform):
    """Gaussian blur (thesis: kernel 11 x 11, sigma 10, at 389 x 320; scaled to the image)."""

    name = "blurring"
    random = False  # the thesis's blur is fixed: 11 x 11, sigma 10

    def __init__(self, kernel: int = 11, sigma: float = 10.0, seed: int = 0) -> None:
        self.kernel, self.sigma = kernel, sigma
        super().__init__(seed)

    def randomize(self, image):
        s = _scale(image)
        k = max(3, int(round(self.kernel * s)) | 1)
        return {"kernel": k, "sigma": self.sigma * s}

    def apply(self, image, params):
        # the separable Gaussian kernel, applied row then column (twice GaussianBlur's speed
        # for a given sigma, same result)
        k = cv2.getGaussianKernel(params["kernel"], params["sigma"])
        return cv2.sepFilter2D(image, -1, k, k, borderType=cv2.BORDER_REFLECT_101)


class Colour(Transform):
    """Brightness and contrast factors uniform in [1, 2] (thesis 4.4), as PIL's ImageEnhance:
    brightness multiplies, contrast stretches about the image's mean grey."""

    name = "colouring"

    def __init__(
        self,
        brightness: tuple[float, float] = (1.0, 2.0),
        contrast: tuple[float, float] = (1.0, 2.0),
        seed: int = 0,
    ) -> None:
        self.brightness, self.contrast = tuple(brightness), tuple(contrast)
        super().__init__(seed)

    def randomize(self, image):
        return {
            "brightness": float(self.rng.uniform(*self.brightness)),
            "contrast": float(self.rng.uniform(*self.contrast)),
        }

    def apply(self, image, params):
        b, c = params["brightness"], params["contrast"]
        mean = cv2.mean(image)[0] * b
        # out = (v * b - mean) * c + mean, as a 256-entry table: one lookup per pixel
        lut = _RAMP * np.float32(b * c) + np.float32(mean * (1.0 - c) + 0.5)
        return cv2.LUT(image, np.clip(lut, 0, 255).astype(np.uint8))


class Bilateral(Transform):
    """Edge-preserving smoothing (cv2.bilateralFilter)."""

    name = "bilateral"
    random = False

    def __init__(
        self,
        diameter: int = 9,
        sigma_colour: float = 75.0,
        sigma_space: float = 75.0,
        seed: int = 0,
    ) -> None:
        self.diameter, self.sigma_colour, self.sigma_space = diameter, sigma_colour, sigma_space
        super().__init__(seed)

    def randomize(self, image):
        return {"diameter": max(3, int(round(self.diameter * _scale(image))))}

    def apply(self, image, params):
        return cv2.bilateralFilter(image, params["diameter"], self.sigma_colour, self.sigma_space)


class Elastic(Transform):
    """Elastic deformation (Simard et al., 2003): a random displacement field smoothed by a
    Gaussian of ``sigma`` pixels and scaled by ``alpha`` pixels (both at 389 x 320)."""

    name = "elastic"

    def __init__(self, alpha: float = 60.0, sigma: float = 12.0, seed: int = 0) -> None:
        self.alpha, self.sigma = alpha, sigma
        super().__init__(seed)

    def randomize(self, image):
        return {"field_seed": int(self.rng.integers(2**63))}

    def apply(self, image, params):
        h, w = image.shape
        s = _scale(image)
        rng = np.random.default_rng(params["field_seed"])
        dx, dy = (
            cv2.GaussianBlur(
                rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), max(self.sigma * s, 0.5)
            )
            * (self.alpha * s)
            for _ in range(2)
        )
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        return cv2.remap(
            image, xx + dx, yy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )


def mixup(
    a: np.ndarray, b: np.ndarray, ya: float, yb: float, lam: float
) -> tuple[np.ndarray, float]:
    """Mixup (Zhang et al., 2017): the convex combination of two images and of their labels."""
    out = np.clip(np.rint(lam * a.astype(np.float32) + (1 - lam) * b), 0, 255).astype(np.uint8)
    return out, float(lam * ya + (1 - lam) * yb)


class Mixup(Transform):
    """Mixup with a partner image chosen by the caller; lambda ~ Beta(alpha, alpha)."""

    name = "mixup"

    def __init__(self, alpha: float = 0.4, seed: int = 0) -> None:
        self.alpha = alpha
        super().__init__(seed)

    def randomize(self, image):
        return {"lambda": float(self.rng.beta(self.alpha, self.alpha))}


METHODS = {
    cls.name: cls
    for cls in (
        Rotation,
        Flip,
        Translation,
        Shear,
        Scaling,
        RandomCrop,
        Noise,
        SaltPepper,
        Blur,
        Colour,
        Bilateral,
        Elastic,
        Mixup,
    )
}
THESIS_METHODS = (
    "rotation",
    "flipping",
    "translation",
    "shearing",
    "cropping",
    "noise",
    "blurring",
    "colouring",
)  # thesis 4.4, in Figure 22's order


@dataclass
class Compose:
    """Transforms applied in order; runs of geometric ones become one affine warp."""

    transforms: list[Transform]

    def set_random_state(self, seed: int) -> Compose:
        root = np.random.SeedSequence(seed)
        for t, child in zip(self.transforms, root.spawn(len(self.transforms)), strict=True):
            t.set_random_state(np.random.default_rng(child))
        return self

    def randomize(self, image: np.ndarray) -> dict:
        return {t.name: t.randomize(image) for t in self.transforms}

    def apply(self, image: np.ndarray, params: dict) -> np.ndarray:
        out = image
        pending = None  # accumulated affine matrix of consecutive geometric transforms
        border = cv2.BORDER_REPLICATE
        for t in self.transforms:
            p = params[t.name]
            if t.affine:
                m = t.matrix(out, p)
                pending = m if pending is None else m @ pending
                if isinstance(t, Translation):
                    border = cv2.BORDER_CONSTANT  # the shift's zero fill wins
                continue
            if pending is not None:
                out = _warp(out, pending, border)
                pending, border = None, cv2.BORDER_REPLICATE
            out = t.apply(out, p)
        if pending is not None:
            out = _warp(out, pending, border)
        return out

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, dict]:
        params = self.randomize(image)
        return self.apply(image, params), params


def _warp(image: np.ndarray, m: np.ndarray, border: int) -> np.ndarray:
    h, w = image.shape
    return cv2.warpAffine(
        image, m[:2], (w, h), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0
    )


def build(methods: list[str] | str, settings: dict | None = None, seed: int = 0):
    """A transform (or a Compose of several) by method name, with per-method settings."""
    names = [methods] if isinstance(methods, str) else list(methods)
    settings = settings or {}
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown augmentation methods {unknown}; known: {sorted(METHODS)}")
    ts = [METHODS[n](**settings.get(n, {})) for n in names]
    if len(ts) == 1:
        return ts[0].set_random_state(seed)
    return Compose(ts).set_random_state(seed)
