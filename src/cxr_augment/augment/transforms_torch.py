"""The thesis's traditional augmentations as batched tensor operations (for a GPU).

``BatchAugment(methods)`` maps a batch (B, 1, H, W) in [0, 1] to its augmented batch, drawing
every sample's parameters from a ``torch.Generator``: the geometric methods (rotation,
flipping, translation, shearing, cropping) become one affine grid per sample and a single
``grid_sample``; noise, blur (a separable convolution) and colouring are elementwise or
convolutional over the whole batch. Same settings and defaults as ``transforms.py``, the
composition's coins included (each method on a sample with probability ``compose.p``, drawn
again for a sample where none fired); runs on any device.

The augmented training sets are rendered by ``transforms.py`` (``sets.py``); this path is for
augmenting on the fly and is timed in ``bench/bench_augmentation.py``. Its sampling differs
from OpenCV's by interpolation details (float grids, zero or border padding), not by
distribution. Cropping's ``mode: pad`` has no batched version.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cxr_augment.augment.transforms import REFERENCE_SIZE

GEOMETRIC = ("rotation", "flipping", "translation", "shearing", "cropping", "scaling")
SUPPORTED = (*GEOMETRIC, "noise", "blurring", "colouring")


def _uniform(g: torch.Generator, n: int, lo: float, hi: float, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


class BatchAugment:
    def __init__(self, methods: list[str], settings: dict | None = None) -> None:
        unknown = [m for m in methods if m not in SUPPORTED]
        if unknown:
            raise ValueError(f"no batched version of {unknown}; batched methods: {SUPPORTED}")
        self.methods = list(methods)
        s = settings or {}
        self.max_rotation = s.get("rotation", {}).get("max_degrees", 90.0)
        self.max_shift = s.get("translation", {}).get("max_fraction", 0.2)
        self.max_shear = s.get("shearing", {}).get("max_degrees", 15.0)
        self.shear_sign = s.get("shearing", {}).get("random_sign", False)
        self.crop = s.get("cropping", {}).get("size", (256, 256))
        if s.get("cropping", {}).get("mode", "resize") != "resize":
            raise ValueError("cropping: the batched path only resizes the crop back (mode resize)")
        self.scale = (
            s.get("scaling", {}).get("min_factor", 0.8),
            s.get("scaling", {}).get("max_factor", 1.2),
        )
        self.noise = {
            "variance": 0.5,
            "max_amplitude": 30.0,
            "pepper_fraction": 0.02,
            **s.get("noise", {}),
        }
        self.blur = {"kernel": 11, "sigma": 10.0, **s.get("blurring", {})}
        self.colour = {"brightness": (1.0, 2.0), "contrast": (1.0, 2.0), **s.get("colouring", {})}
        compose = {"p": 0.5, "at_least_one": True, **s.get("compose", {})}
        self.p = 1.0 if len(self.methods) == 1 else float(compose["p"])
        self.at_least_one = bool(compose["at_least_one"])
        if not (0.0 < self.p <= 1.0 or (self.p == 0.0 and not self.at_least_one)):
            raise ValueError(f"compose: p must be in (0, 1], got {self.p}")

    def applied(self, b: int, g: torch.Generator, device) -> torch.Tensor:
        """(B, methods) booleans: which methods apply to which sample (the composition's
        coins, drawn again for the samples where none fired)."""
        n = len(self.methods)
        if self.p >= 1.0:
            return torch.ones(b, n, dtype=torch.bool, device=device)
        on = torch.rand(b, n, generator=g, device=device) < self.p
        while self.at_least_one:
            empty = ~on.any(dim=1)
            if not bool(empty.any()):
                break
            redraw = torch.rand(b, n, generator=g, device=device) < self.p
            on = torch.where(empty[:, None], redraw, on)
        return on

    def _affine(self, b: int, h: int, w: int, on: torch.Tensor, g, device) -> torch.Tensor:
        """(B, 2, 3) matrices mapping output to input in normalised coordinates, and the
        samples (B,) whose fill is the zero of a shift."""
        m = torch.eye(3, device=device).repeat(b, 1, 1)
        zero_fill = torch.zeros(b, dtype=torch.bool, device=device)
        aspect = w / h  # normalised x and y differ in scale: rotate in pixel units
        to_px = torch.diag(torch.tensor([aspect, 1.0, 1.0], device=device))
        from_px = torch.diag(torch.tensor([1.0 / aspect, 1.0, 1.0], device=device))
        for j, name in enumerate(self.methods):
            t = torch.eye(3, device=device).repeat(b, 1, 1)
            if name == "rotation":
                a = torch.deg2rad(_uniform(g, b, -self.max_rotation, self.max_rotation, device))
                t[:, 0, 0], t[:, 0, 1] = torch.cos(a), -torch.sin(a)
                t[:, 1, 0], t[:, 1, 1] = torch.sin(a), torch.cos(a)
                t = from_px @ t @ to_px
            elif name == "flipping":
                vertical = torch.rand(b, generator=g, device=device) < 0.5
                t[:, 1, 1] = torch.where(vertical, -1.0, 1.0)
                t[:, 0, 0] = torch.where(vertical, 1.0, -1.0)
            elif name == "translation":
                t[:, 0, 2] = _uniform(g, b, -2 * self.max_shift, 2 * self.max_shift, device)
                t[:, 1, 2] = _uniform(g, b, -2 * self.max_shift, 2 * self.max_shift, device)
                zero_fill |= on[:, j]
            elif name == "shearing":
                k = torch.tan(torch.deg2rad(_uniform(g, b, 0.0, self.max_shear, device)))
                if self.shear_sign:
                    k = torch.where(torch.rand(b, generator=g, device=device) < 0.5, -k, k)
                # output to input: x_in = x_out - tan(angle) * y, as transforms.Shear
                t[:, 0, 1] = -k
                t = from_px @ t @ to_px
            elif name == "scaling":
                f = 1.0 / _uniform(g, b, self.scale[0], self.scale[1], device)
                t[:, 0, 0], t[:, 1, 1] = f, f
            elif name == "cropping":
                fh = min(1.0, self.crop[0] / REFERENCE_SIZE[0])
                fw = min(1.0, self.crop[1] / REFERENCE_SIZE[1])
                t[:, 0, 0], t[:, 1, 1] = fw, fh
                t[:, 0, 2] = _uniform(g, b, -(1 - fw), 1 - fw, device)
                t[:, 1, 2] = _uniform(g, b, -(1 - fh), 1 - fh, device)
            else:
                continue
            eye = torch.eye(3, device=device)
            m = m @ torch.where(on[:, j, None, None], t, eye)
        return m[:, :2], zero_fill

    def _blur(self, x: torch.Tensor, g, device) -> torch.Tensor:
        b, _, h, w = x.shape
        s = w / REFERENCE_SIZE[1]
        k = max(3, int(round(self.blur["kernel"] * s)) | 1)
        sigma = self.blur["sigma"]
        if isinstance(sigma, list | tuple):
            sig = _uniform(g, b, float(sigma[0]), float(sigma[1]), device) * s
        else:
            sig = torch.full((b,), float(sigma) * s, device=device)
        r = torch.arange(k, device=device, dtype=x.dtype) - (k - 1) / 2
        kern = torch.exp(-0.5 * (r[None] / sig[:, None].to(x.dtype)) ** 2)
        kern = kern / kern.sum(dim=1, keepdim=True)  # (B, k): one kernel per sample
        y = x.reshape(1, b, h, w)
        y = F.conv2d(
            F.pad(y, (k // 2, k // 2, 0, 0), mode="reflect"), kern.view(b, 1, 1, k), groups=b
        )
        y = F.conv2d(
            F.pad(y, (0, 0, k // 2, k // 2), mode="reflect"), kern.view(b, 1, k, 1), groups=b
        )
        return y.reshape(b, 1, h, w)

    def _colour(self, x: torch.Tensor, g, device) -> torch.Tensor:
        # PIL's ImageEnhance.Brightness then Contrast on the grey levels (transforms.Colour):
        # truncated and clipped after each blend, the contrast about int(mean + 0.5) of the
        # brightened levels
        b = x.shape[0]
        bright = _uniform(g, b, *self.colour["brightness"], device).view(b, 1, 1, 1)
        contrast = _uniform(g, b, *self.colour["contrast"], device).view(b, 1, 1, 1)
        v = torch.round(x * 255.0)
        v = torch.floor((v * bright).clamp_(0, 255))
        mean = torch.floor(v.mean(dim=(2, 3), keepdim=True) + 0.5)
        v = torch.floor((mean + contrast * (v - mean)).clamp_(0, 255))
        return v / 255.0

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        device = x.device
        on = self.applied(b, generator, device)
        if any(m in GEOMETRIC for m in self.methods):
            theta, zero_fill = self._affine(b, h, w, on, generator, device)
            grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
            kw = {"mode": "bilinear", "align_corners": False}
            border = F.grid_sample(x, grid, padding_mode="border", **kw)
            if bool(zero_fill.any()):
                zeros = F.grid_sample(x, grid, padding_mode="zeros", **kw)
                border = torch.where(zero_fill.view(b, 1, 1, 1), zeros, border)
            x = border
        for j, name in enumerate(self.methods):
            mask = on[:, j].view(b, 1, 1, 1)
            if name == "noise":
                gaussian = torch.rand(b, 1, 1, 1, generator=generator, device=device) < 0.5
                amp = _uniform(generator, b, 0, self.noise["max_amplitude"], device).view(
                    b, 1, 1, 1
                )
                std = math.sqrt(self.noise["variance"]) * amp / 255.0
                noisy = x + std * torch.randn(
                    x.shape, generator=generator, device=device, dtype=x.dtype
                )
                pepper = (
                    torch.rand(x.shape, generator=generator, device=device)
                    < self.noise["pepper_fraction"]
                )
                out = torch.where(gaussian, noisy, x.masked_fill(pepper, 0.0)).clamp_(0, 1)
            elif name == "blurring":
                out = self._blur(x, generator, device)
            elif name == "colouring":
                out = self._colour(x, generator, device)
            else:
                continue
            x = torch.where(mask, out, x)
        return x
