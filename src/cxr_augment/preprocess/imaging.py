"""Images: strict decoding to 8-bit grey, resizing, and the thesis's lung masks (4.3).

Decoding trusts nothing: an empty file, a JPEG or PNG without its end marker (truncated), a file
no decoder reads, or a pixel format outside the rules below raises ``DecodeError`` with the
reason, which the tensor store turns into a quarantine row.

Conversion rules to 8-bit grey:
- 8-bit grey: as is.
- 16-bit grey: ``full_range`` (default) maps 0..65535 linearly onto 0..255 (v / 257, rounded);
  ``min_max`` stretches the image's own minimum..maximum onto 0..255 (for 12-bit data stored
  in 16 bits).
- RGB (8 or 16 bit): ITU-R BT.601 luma, 0.299 R + 0.587 G + 0.114 B, after the bit-depth rule.
- RGBA: composited onto black by its alpha, then as RGB.
- anything else (2-channel grey+alpha, floating point, signed, 32-bit): unsupported mode.

Masks are occluders, as in the thesis's Figure 18: ``square``, ``separate`` and ``joint`` hide
(set to 0) the centre square, the two lung polygons, or the one axially symmetric polygon that
joins them, leaving only the edges and markers; ``inverted_joint`` keeps only the inside of the
joint polygon and hides the edges and markers. Polygons are given in normalised (x, y)
coordinates for the patient's right lung (the viewer's left) and mirrored about x = 0.5.
"""

from __future__ import annotations

import cv2
import numpy as np

JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
PNG_SIGNATURE, PNG_IEND = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
SIXTEEN_BIT_RULES = ("full_range", "min_max")
MASKS = ("none", "square", "separate", "joint", "inverted_joint")


class DecodeError(ValueError):
    """An image that cannot be used; ``reason`` goes to the quarantine table."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _check_container(data: bytes) -> None:
    if len(data) == 0:
        raise DecodeError("empty file")
    if data[:2] == JPEG_SOI:
        # the end-of-image marker, allowing padding after it
        if JPEG_EOI not in data[-64:]:
            raise DecodeError("truncated JPEG (no end-of-image marker)")
    elif data[:8] == PNG_SIGNATURE:
        if PNG_IEND not in data[-64:]:
            raise DecodeError("truncated PNG (no IEND chunk)")


def _to_8bit(image: np.ndarray, rule: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype != np.uint16:
        raise DecodeError(f"unsupported mode: {image.dtype} pixels")
    if rule == "full_range":
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if rule == "min_max":
        lo, hi = int(image.min()), int(image.max())
        if hi == lo:
            return np.zeros(image.shape, np.uint8)
        return np.rint((image.astype(np.float32) - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    raise ValueError(f"16-bit rule must be one of {SIXTEEN_BIT_RULES}, got {rule!r}")


_REDUCED = {
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's start-of-frame marker, without decoding."""
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(
                data[i + 7 : i + 9], "big"
            )
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def decode_grey(
    data: bytes, sixteen_bit: str = "full_range", at_least: tuple[int, int] | None = None
) -> np.ndarray:
    """Bytes of a JPEG or PNG (8 or 16 bit; grey, RGB or RGBA) to a uint8 grey image.

    With ``at_least`` (height, width), a JPEG is decoded directly at 1/2, 1/4 or 1/8 of its
    size (libjpeg's scaled inverse DCT, an area average) when that still covers the size:
    the thumbnail costs a fraction of a full decode. A JPEG is always 8-bit and libjpeg's
    grey output is the BT.601 luma, so the conversion rules are unchanged.
    """
    _check_container(data)
    buf = np.frombuffer(data, dtype=np.uint8)
    if at_least is not None and data[:2] == JPEG_SOI:
        size = _jpeg_size(data)
        if size is not None:
            for r in (8, 4, 2):
                if size[0] // r >= at_least[0] and size[1] // r >= at_least[1]:
                    image = cv2.imdecode(buf, _REDUCED[r])
                    if image is None:
                        raise DecodeError("undecodable image")
                    return image
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise DecodeError("undecodable image")
    if image.ndim == 2:
        return _to_8bit(image, sixteen_bit)
    channels = image.shape[2]
    if channels == 1:
        return _to_8bit(image[:, :, 0], sixteen_bit)
    if channels == 3:
        return cv2.cvtColor(_to_8bit(image, sixteen_bit), cv2.COLOR_BGR2GRAY)
    if channels == 4:
        rgba = _to_8bit(image, sixteen_bit).astype(np.float32)
        rgb = rgba[:, :, :3] * (rgba[:, :, 3:4] / 255.0)  # composite onto black
        return cv2.cvtColor(np.rint(rgb).astype(np.uint8), cv2.COLOR_BGR2GRAY)
    raise DecodeError(f"unsupported mode: {channels} channels")


def decode_floor(data: bytes) -> np.ndarray:
    """The plain decode, for the benchmark's floor: no checks, no conversion."""
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """To (height, width): a centred crop when the image is at most 2 % larger in each
    dimension (no resampling for a pixel or two), else area averaging when shrinking by 2 or
    more, else bilinear."""
    h, w = image.shape
    if (h, w) == (height, width):
        return image
    if height <= h <= height * 1.02 and width <= w <= width * 1.02:
        top, left = (h - height) // 2, (w - width) // 2
        return image[top : top + height, left : left + width]
    big_shrink = image.shape[0] >= 2 * height or image.shape[1] >= 2 * width
    return cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if big_shrink else cv2.INTER_LINEAR
    )


# --- masks (thesis 4.3, Figure 18) -------------------------------------------------------------


def _polygon(points, height: int, width: int) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise ValueError(f"a polygon needs at least 3 (x, y) points, got {points}")
    if pts.min() < 0 or pts.max() > 1:
        raise ValueError("polygon coordinates are normalised: within [0, 1]")
    scaled = np.stack([pts[:, 0] * (width - 1), pts[:, 1] * (height - 1)], axis=1)
    return np.round(scaled * 16).astype(np.int32)  # 4 bits of sub-pixel precision


def _fill(polygons, height: int, width: int) -> np.ndarray:
    canvas = np.zeros((height, width), np.uint8)
    cv2.fillPoly(canvas, [_polygon(p, height, width) for p in polygons], 1, cv2.LINE_8, 4)
    return canvas.astype(bool)


def _mirror(points) -> list[list[float]]:
    return [[1.0 - x, y] for x, y in points][::-1]


def mask_region(name: str, height: int, width: int, params: dict) -> np.ndarray:
    """The region a mask hides (True = set to 0).

    Args:
        name: one of ``MASKS``.
        params: ``square_size`` [h, w] on ``reference_size`` [h, w] (the thesis: 300 x 300 on
            389 x 320), ``right_lung`` and ``joint_right_half`` polygons (normalised).
    """
    if name not in MASKS:
        raise ValueError(f"mask must be one of {MASKS}, got {name!r}")
    if name == "none":
        return np.zeros((height, width), bool)
    if name == "square":
        ref_h, ref_w = params["reference_size"]
        sq_h, sq_w = params["square_size"]
        h = int(round(height * sq_h / ref_h))
        w = int(round(width * sq_w / ref_w))
        top, left = (height - h) // 2, (width - w) // 2
        hide = np.zeros((height, width), bool)
        hide[top : top + h, left : left + w] = True
        return hide
    # rasterised once and mirrored, so the masks are exactly symmetric about the midline
    if name == "separate":
        right = _fill([params["right_lung"]], height, width)
        return right | np.fliplr(right)
    half = params["joint_right_half"]
    joint = _fill([list(half) + _mirror(half)], height, width)
    joint |= np.fliplr(joint)
    return joint if name == "joint" else ~joint


def apply_mask(image: np.ndarray, hide: np.ndarray) -> np.ndarray:
    """A copy of ``image`` with the hidden region set to 0."""
    if image.shape[-2:] != hide.shape:
        raise ValueError(f"mask {hide.shape} does not fit image {image.shape}")
    out = image.copy()
    out[..., hide] = 0
    return out
