"""The thesis's traditional augmentations as batched tensor operations (for a GPU).

``BatchAugment(methods)`` maps a batch (B, 1, H, W) in [0, 1] to its augmented batch, drawing
every sample's parameters from a ``torch.Generator``: the geometric methods (rotation,
flipping, translation, shearing, cropping) become one affine grid per sample and a single
``grid_sample``; noise, blur (a separable convolution) and colouring are elementwise or
convolutional over the whole batch. Same defaults as ``transforms.py``; runs on any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cxr_augment.transforms import REFERENCE_SIZE

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
        self.crop = s.get("cropping", {}).get("size", (256, 256))
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

    def _affine(self, b: int, h: int, w: int, g, device) -> tuple[torch.Tensor, bool]:
        """(B, 2, 3) matrices mapping output to input in normalised coordinates."""
        m = torch.eye(3, device=device).repeat(b, 1, 1)
        zero_fill = False
        aspect = w / h  # normalised x and y differ in scale: rotate in pixel units
        to_px = torch.diag(torch.tensor([aspect, 1.0, 1.0], device=device))
        from_px = torch.diag(torch.tensor([1.0 / aspect, 1.0, 1.0], device=device))
        for name in self.methods:
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
                zero_fill = True
            elif name == "shearing":
                sign = torch.where(torch.rand(b, generator=g, device=device) < 0.5, 1.0, -1.0)
                k = torch.tan(torch.deg2rad(_uniform(g, b, 0.0, self.max_shear, device))) * sign
                t[:, 0, 1] = k
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
            m = m @ t
        return m[:, :2], zero_fill

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        device = x.device
        if any(m in GEOMETRIC for m in self.methods):
            theta, zero_fill = self._affine(b, h, w, generator, device)
            grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
            x = F.grid_sample(
                x,
                grid,
                mode="bilinear",
                align_corners=False,
                padding_mode="zeros" if zero_fill else "border",
            )
        for name in self.methods:
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
                x = torch.where(gaussian, noisy, x.masked_fill(pepper, 0.0)).clamp_(0, 1)
            elif name == "blurring":
                s = w / REFERENCE_SIZE[1]
                k = max(3, int(round(self.blur["kernel"] * s)) | 1)
                sigma = self.blur["sigma"] * s
                r = torch.arange(k, device=device, dtype=x.dtype) - (k - 1) / 2
                kern = torch.exp(-0.5 * (r / sigma) ** 2)
                kern = kern / kern.sum()
                x = F.conv2d(
                    F.pad(x, (k // 2, k // 2, 0, 0), mode="reflect"), kern.view(1, 1, 1, k)
                )
                x = F.conv2d(
                    F.pad(x, (0, 0, k // 2, k // 2), mode="reflect"), kern.view(1, 1, k, 1)
                )
            elif name == "colouring":
                bright = _uniform(generator, b, *self.colour["brightness"], device).view(b, 1, 1, 1)
                contrast = _uniform(generator, b, *self.colour["contrast"], device).view(b, 1, 1, 1)
                x = x * bright
                mean = x.mean(dim=(2, 3), keepdim=True)
                x = ((x - mean) * contrast + mean).clamp_(0, 1)
        return x
