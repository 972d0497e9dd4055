"""Traditional augmentations (thesis 3.2.1, 4.4), one class per method, on uint8 grey images.

Each transform owns a ``numpy.random.Generator``: ``set_random_state(seed)`` seeds it,
``randomize()`` draws this call's parameters, ``apply(image, params)`` is deterministic.
``__call__`` does both and returns ``(image, params)``, so the parameters drawn can be stored
beside the image. The thesis's values are the defaults; sizes given in pixels are for its
389 x 320 images and scale with the image (``REFERENCE_SIZE``).

``Compose`` is a composition (thesis 4.5): each method applies with probability ``p`` (0.5),
drawn per image from the composition's own generator, and a draw where none applies is drawn
again (``at_least_one``), since an unaugmented copy would only duplicate its parent; ``p: 1``
applies every method every time. The methods that apply run in order; consecutive geometric
ones (rotation, shear, translation, scaling, flips, a resized crop) are folded into a single
affine warp, so an image is resampled once, not once per method (one alone takes its own path:
an exact flip, a plain resize).
"""

from __future__ import annotations

import functools
import importlib
import math
from dataclasses import dataclass

import cv2
import numpy as np

REFERENCE_SIZE = (389, 320)  # (H, W) the thesis's pixel sizes refer to
_PAD_FROM = 2  # pixels: a warp reaching further outside its source pads the source first
_KERNELS_KEPT = 64  # Gaussian kernels a blur keeps (one per image size and fixed sigma)


@functools.cache
def _compiled():
    """The compiled kernels (kernels.py), imported on first use: numba loads in a few tenths
    of a second, which a process that never augments need not pay. (A constant module name
    to ``import_module``: a node's code version counts the module whole.)"""
    return importlib.import_module("cxr_augment.augment.kernels")


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


def _warp(image: np.ndarray, m: np.ndarray, border: int) -> np.ndarray:
    """``image`` under the forward affine map ``m`` (3 x 3), bilinear, in its own size.

    OpenCV samples a source point outside the image on a slow per-pixel path, and a rotation
    by tens of degrees sends a third of the output there. So the source is first padded by
    its own border rule (replicate, or the constant 0) as far as the output's corners reach:
    every bilinear neighbour then lies inside, on the vectorised path, and reads the value the
    border rule would have given it (the same image, to the warp's fixed-point rounding).
    """
    h, w = image.shape
    # the inverse map (output -> source) of [[a, b, c], [d, e, f]], in plain floats: a 2 x 3
    # inverse costs less this way than numpy's call overhead
    (a, b, c), (d, e, f) = m[0].tolist(), m[1].tolist()
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    ic, if_ = -(ia * c + ib * f), -(id_ * c + ie * f)
    # where the output's corners come from, plus the bilinear neighbour right / below
    x_lo = ic + min(0.0, ia * (w - 1)) + min(0.0, ib * (h - 1))
    x_hi = ic + max(0.0, ia * (w - 1)) + max(0.0, ib * (h - 1))
    y_lo = if_ + min(0.0, id_ * (w - 1)) + min(0.0, ie * (h - 1))
    y_hi = if_ + max(0.0, id_ * (w - 1)) + max(0.0, ie * (h - 1))
    left, right = max(0, math.ceil(-x_lo) + 1), max(0, math.ceil(x_hi - (w - 1)) + 1)
    top, bottom = max(0, math.ceil(-y_lo) + 1), max(0, math.ceil(y_hi - (h - 1)) + 1)
    if max(left, right, top, bottom) > _PAD_FROM:
        image = cv2.copyMakeBorder(image, top, bottom, left, right, border, value=0)
        ic, if_ = ic + left, if_ + top
    return cv2.warpAffine(
        image,
        np.array([[ia, ib, ic], [id_, ie, if_]]),
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=border,
        borderValue=0,
    )


class AffineTransform(Transform):
    affine = True
    border = cv2.BORDER_REPLICATE  # the thesis's "nearest" fill

    def matrix(self, image: np.ndarray, params: dict) -> np.ndarray:
        raise NotImplementedError

    def apply(self, image: np.ndarray, params: dict) -> np.ndarray:
        return _warp(image, self.matrix(image, params), self.border)


def _about_centre(image: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    """The 3 x 3 map of the linear map [[a, b], [c, d]] about the image's centre."""
    h, w = image.shape
    x, y = (w - 1) / 2.0, (h - 1) / 2.0
    return np.array([[a, b, x - a * x - b * y], [c, d, y - c * x - d * y], [0.0, 0.0, 1.0]])


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
        return _about_centre(image, math.cos(a), math.sin(a), -math.sin(a), math.cos(a))


class Flip(AffineTransform):
    """A vertical or a horizontal flip, with probability 0.5 each (thesis 4.4)."""

    name = "flipping"

    def __init__(self, p_vertical: float = 0.5, seed: int = 0) -> None:
        self.p_vertical = p_vertical
        super().__init__(seed)

    def randomize(self, image):
        return {"axis": "vertical" if self.rng.random() < self.p_vertical else "horizontal"}

    def matrix(self, image, params):
        if params["axis"] == "vertical":
            return _about_centre(image, 1.0, 0.0, 0.0, -1.0)
        return _about_centre(image, -1.0, 0.0, 0.0, 1.0)

    def apply(self, image, params):  # exact permutation of pixels, no resampling
        if params["axis"] == "vertical":
            return cv2.flip(image, 0)  # row copies
        return _compiled().flip_horizontal(image)


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
        return np.array([[1.0, 0.0, params["dx"]], [0.0, 1.0, params["dy"]], [0.0, 0.0, 1.0]])

    def apply(self, image, params):
        # a shift is separable: a two-tap filter per axis for the fractional part (float
        # intermediate, like the warp's bilinear), then a copy for the integer part, twice
        # the warp's speed. With ix = floor(dx), fx = dx - ix:
        #   out(x) = fx * in(x - ix - 1) + (1 - fx) * in(x - ix), zero outside the image
        h, w = image.shape
        ix, iy = math.floor(params["dx"]), math.floor(params["dy"])
        fx, fy = params["dx"] - ix, params["dy"] - iy
        out = np.zeros_like(image)
        x0, x1, y0, y1 = max(0, ix), min(w, w + 1 + ix), max(0, iy), min(h, h + 1 + iy)
        if x1 <= x0 or y1 <= y0:
            return out
        framed = cv2.copyMakeBorder(image, 0, 1, 0, 1, cv2.BORDER_CONSTANT, value=0)
        kx = np.array([[fx, 1.0 - fx]], np.float32)
        ky = np.array([[fy], [1.0 - fy]], np.float32)
        # anchor (1, 1): f(x) = kx[0] * framed(x - 1) + kx[1] * framed(x), zero before x = 0
        f = cv2.sepFilter2D(framed, -1, kx, ky, anchor=(1, 1), borderType=cv2.BORDER_CONSTANT)
        out[y0:y1, x0:x1] = f[y0 - iy : y1 - iy, x0 - ix : x1 - ix]
        return out


class Shear(AffineTransform):
    """A horizontal shear by an angle uniform in [0, max_degrees] (thesis 4.4: "a random
    integer between 0 and 30 as the intensity number which means the shearing angle is between
    0 and 15 degrees"; drawn here as a real number), nearest fill. The thesis draws no sign:
    every shear leans the same way (rows below the centre move right). ``random_sign`` flips
    it with probability 0.5."""

    name = "shearing"

    def __init__(self, max_degrees: float = 15.0, random_sign: bool = False, seed: int = 0) -> None:
        self.max_degrees, self.random_sign = max_degrees, random_sign
        super().__init__(seed)

    def randomize(self, image):
        degrees = float(self.rng.uniform(0.0, self.max_degrees))
        if self.random_sign and self.rng.random() < 0.5:
            degrees = -degrees
        return {"degrees": degrees}

    def matrix(self, image, params):
        # x_out = x_in + tan(angle) * (y_in - centre_y)
        return _about_centre(image, 1.0, math.tan(math.radians(params["degrees"])), 0.0, 1.0)


class Scaling(AffineTransform):
    """Zoom in or out by a factor in [min, max] about the centre, nearest fill."""

    name = "scaling"

    def __init__(self, min_factor: float = 0.8, max_factor: float = 1.2, seed: int = 0) -> None:
        self.min_factor, self.max_factor = min_factor, max_factor
        super().__init__(seed)

    def randomize(self, image):
        return {"factor": float(self.rng.uniform(self.min_factor, self.max_factor))}

    def matrix(self, image, params):
        return _about_centre(image, params["factor"], 0.0, 0.0, params["factor"])


class RandomCrop(AffineTransform):
    """A random crop (thesis 4.4: 256 x 256 of its 389 x 320 images; scaled with the image),
    brought back to the image size, which the classifier's batches need.

    ``mode: resize`` (the default) stretches the crop back to the full size with bilinear
    interpolation: at the thesis's size a 256 x 256 window becomes 389 x 320, a zoom of 1.52
    vertically and 1.25 horizontally, so the anatomy is also magnified and its aspect ratio
    changed. As a map this is a scaling plus a shift, so in a Compose it folds into the one
    warp. ``mode: pad`` keeps the crop's pixels unscaled and centres them on a canvas of the
    image size filled with ``fill`` (no resampling; it does not fold into a warp).
    """

    name = "cropping"
    MODES = ("resize", "pad")

    def __init__(
        self, size: tuple[int, int] = (256, 256), mode: str = "resize", fill: int = 0, seed: int = 0
    ) -> None:
        if mode not in self.MODES:
            raise ValueError(f"cropping: mode must be one of {self.MODES}, got {mode!r}")
        self.size, self.mode, self.fill = tuple(size), mode, fill
        self.affine = mode == "resize"
        super().__init__(seed)

    def randomize(self, image):
        h, w = image.shape
        ch = min(h, max(2, round(self.size[0] * h / REFERENCE_SIZE[0])))
        cw = min(w, max(2, round(self.size[1] * w / REFERENCE_SIZE[1])))
        # a uniform integer in [0, n) as floor(n * u): a third of Generator.integers' time
        return {
            "top": int(self.rng.random() * (h - ch + 1)),
            "left": int(self.rng.random() * (w - cw + 1)),
            "height": ch,
            "width": cw,
        }

    def matrix(self, image, params):
        # cv2.resize's pixel-centre convention: x_out = (x_in - left + 0.5) * w / cw - 0.5
        h, w = image.shape
        sx, sy = w / params["width"], h / params["height"]
        tx, ty = (0.5 - params["left"]) * sx - 0.5, (0.5 - params["top"]) * sy - 0.5
        return np.array([[sx, 0.0, tx], [0.0, sy, ty], [0.0, 0.0, 1.0]])

    def apply(self, image, params):
        top, left, ch, cw = params["top"], params["left"], params["height"], params["width"]
        crop = image[top : top + ch, left : left + cw]
        h, w = image.shape
        if self.mode == "resize":  # cv2.resize's INTER_LINEAR, compiled (kernels.py)
            return _compiled().resize_linear(crop, w, h)
        out = np.full_like(image, self.fill)
        y, x = (h - ch) // 2, (w - cw) // 2
        out[y : y + ch, x : x + cw] = crop
        return out


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
    """Gaussian blur (thesis 4.4: kernel 11 x 11, sigma 10, at 389 x 320; scaled to the image).

    The thesis's blur is a fixed filter: every copy of a parent image is the same image, so a
    strategy that makes 11 copies of each positive (Table 4) adds each blurred positive 11
    times over. ``sigma: [lo, hi]`` draws sigma uniformly per image instead (the kernel size
    stays). Note that sigma 10 on an 11-tap kernel is nearly a box filter (edge weight 0.88 of
    the centre's); sigmas below the kernel's radius are where the drawn value shows.
    """

    name = "blurring"

    def __init__(
        self, kernel: int = 11, sigma: float | tuple[float, float] = 10.0, seed: int = 0
    ) -> None:
        self.kernel = kernel
        self.random = isinstance(sigma, list | tuple)
        self.sigma = tuple(sigma) if self.random else float(sigma)
        self._kernels: dict = {}
        super().__init__(seed)

    def randomize(self, image):
        s = _scale(image)
        k = max(3, int(round(self.kernel * s)) | 1)
        sigma = float(self.rng.uniform(*self.sigma)) if self.random else self.sigma
        return {"kernel": k, "sigma": sigma * s}

    def apply(self, image, params):
        # the separable Gaussian kernel (cv2.getGaussianKernel, as cv2.GaussianBlur), in
        # float32, applied row then column by the compiled kernel: within 0.5 of the exact
        # filter, a grey level or two from cv2.GaussianBlur, in under half its time
        key = (params["kernel"], params["sigma"])
        k = self._kernels.get(key)
        if k is None:
            k = cv2.getGaussianKernel(*key).astype(np.float32).ravel()
            if len(self._kernels) < _KERNELS_KEPT:
                self._kernels[key] = k
        return _compiled().gaussian_blur(image, k)


class Colour(Transform):
    """Brightness and contrast factors uniform in [1, 2] (thesis 4.4), applied as PIL's
    ``ImageEnhance.Brightness(image).enhance(brightness)`` followed by
    ``ImageEnhance.Contrast(...).enhance(contrast)``, to the grey level.

    1. Brightness blends with black: ``v1 = trunc(clip(brightness * v))``, a uint8 image.
    2. Contrast blends with a flat image at the mean grey of ``v1``'s histogram, rounded as
       PIL rounds it, ``m = int(mean + 0.5)``: ``v2 = trunc(clip(m + contrast * (v1 - m)))``.

    Both are 256-entry tables; the mean needs the brightened image, so the work is three
    passes over the pixels: a table lookup into the output, its byte sum, and the second
    lookup in place. ``kernels.colour`` builds the tables in compiled code and runs
    StringZilla's SIMD byte lookup and sum on the pixels (albumentations' lookups are the
    same routine), each pass at 5 to 10 times ``cv2.LUT``'s speed. The image is the same as
    PIL's, grey level for grey level.
    """

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
        # Generator.uniform(lo, hi) is lo + (hi - lo) * u for the next double u, so this is
        # the same pair of draws as two uniform calls, in one call
        u, v = self.rng.random(2).tolist()
        (b_lo, b_hi), (c_lo, c_hi) = self.brightness, self.contrast
        return {"brightness": b_lo + (b_hi - b_lo) * u, "contrast": c_lo + (c_hi - c_lo) * v}

    def apply(self, image, params):
        if image.dtype != np.uint8:
            raise TypeError(f"colouring: a uint8 image, got {image.dtype}")
        return _compiled().colour(image, params["brightness"], params["contrast"])


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
    """Several methods in one augmentation (thesis 4.5): each applies with probability ``p``.

    Args:
        transforms: the methods, applied in this order.
        p: the probability that each method applies to an image (thesis 4.5: "a 0.5
            probability of executing each individual traditional augmentation method");
            1.0 applies every method every time.
        at_least_one: draw the coins again while none of them applies (with p = 0.5 and five
            methods, 1 image in 32), so no generated image is a copy of its parent. Each
            method then applies with probability p / (1 - (1 - p) ** n), 0.52 for n = 5.
    """

    transforms: list[Transform]
    p: float = 0.5
    at_least_one: bool = True

    def __post_init__(self) -> None:
        names = [t.name for t in self.transforms]
        if len(set(names)) != len(names):
            raise ValueError(f"a composition names each method once, got {names}")
        lowest_ok = 0.0 < self.p if self.at_least_one else 0.0 <= self.p
        if not (lowest_ok and self.p <= 1.0):
            raise ValueError(
                f"compose: p must be in {'(0' if self.at_least_one else '[0'}, 1], got {self.p}"
            )
        self.coins = np.random.default_rng(0)

    def set_random_state(self, seed: int) -> Compose:
        # one child seed per method, and the last one for the coins
        root = np.random.SeedSequence(seed)
        children = root.spawn(len(self.transforms) + 1)
        for t, child in zip(self.transforms, children, strict=False):
            t.set_random_state(np.random.default_rng(child))
        self.coins = np.random.default_rng(children[-1])
        return self

    def draw_applied(self) -> list[bool]:
        """Which methods apply to this image: a coin of probability ``p`` each."""
        n = len(self.transforms)
        if self.p >= 1.0:
            return [True] * n
        while True:
            applied = self.coins.random(n) < self.p
            if applied.any() or not self.at_least_one:
                return applied.tolist()

    def randomize(self, image: np.ndarray) -> dict:
        """``{method: {"applied": bool, **its parameters}}``, parameters only where applied."""
        return {
            t.name: {"applied": True, **t.randomize(image)} if on else {"applied": False}
            for t, on in zip(self.transforms, self.draw_applied(), strict=True)
        }

    def apply(self, image: np.ndarray, params: dict) -> np.ndarray:
        out = image
        run: list = []  # consecutive geometric transforms that fired, with their parameters

        def flush(out: np.ndarray) -> np.ndarray:
            if len(run) == 1:  # alone, a method's own path (an exact flip, a plain resize)
                t, p = run[0]
                return t.apply(out, p)
            m = run[0][0].matrix(out, run[0][1])
            for t, p in run[1:]:
                m = t.matrix(out, p) @ m
            # the shift's zero fill wins over the others' nearest fill
            zero_fill = any(isinstance(t, Translation) for t, _ in run)
            return _warp(out, m, cv2.BORDER_CONSTANT if zero_fill else cv2.BORDER_REPLICATE)

        for t in self.transforms:
            p = params[t.name]
            if not p.get("applied", True):
                continue
            if t.affine:
                run.append((t, p))
                continue
            if run:
                out = flush(out)
                run.clear()
            out = t.apply(out, p)
        return flush(out) if run else out

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, dict]:
        params = self.randomize(image)
        return self.apply(image, params), params


def build(methods: list[str] | str, settings: dict | None = None, seed: int = 0):
    """A transform by method name, or a ``Compose`` of several, with per-method settings.

    ``settings`` maps a method name to its keyword arguments, and ``compose`` to the
    composition's (``p``, ``at_least_one``). A single method always applies.
    """
    names = [methods] if isinstance(methods, str) else list(methods)
    settings = settings or {}
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown augmentation methods {unknown}; known: {sorted(METHODS)}")
    stray = sorted(set(settings) - set(METHODS) - {"compose"})
    if stray:
        raise ValueError(
            f"augmentation settings for unknown methods {stray}; known: "
            f"{sorted(METHODS)} and compose"
        )
    ts = [METHODS[n](**settings.get(n, {})) for n in names]
    if len(ts) == 1:
        return ts[0].set_random_state(seed)
    return Compose(ts, **settings.get("compose", {})).set_random_state(seed)
