"""Burned-in annotations: the laterality marker, acquisition text and collimator shutters.

Real radiographs carry them near the edges; they correlate with how sick the patient is
(portable AP films are taken of the sickest), which is the shortcut the thesis's lung masks
are meant to remove. They are drawn after windowing, in place.
"""

from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text_box(text: str, scale: float, thickness: int) -> tuple[int, int]:
    (w, h), base = cv2.getTextSize(text, FONT, scale, thickness)
    return w, h + base


def burn_in(image: np.ndarray, spec, rng: np.random.Generator) -> None:
    """Draw the spec's shutter, marker and text lines into ``image`` (uint8, in place)."""
    h, w = image.shape
    unit = w / 320.0  # sizes are designed at 320 pixels wide
    if spec.shutter > 0:
        band = int(round(spec.shutter * h * rng.uniform(0.5, 1.0)))
        value = 0 if rng.random() < 0.7 else int(rng.integers(200, 256))
        edge = int(rng.integers(0, 3))  # bottom, left, right
        if edge == 0:
            image[h - band :, :] = value
        elif edge == 1:
            image[:, : max(1, band // 3)] = value
        else:
            image[:, w - max(1, band // 3) :] = value
    marker_left = None
    if spec.marker:
        scale = float(rng.uniform(0.7, 1.1)) * unit
        thick = max(1, int(round(2 * unit)))
        tw, th = _text_box(spec.marker, scale, thick)
        margin = int(rng.integers(4, 20) * unit)
        # the marker sits on the side it names: patient's right is the viewer's left
        left = spec.marker == "R" if spec.view == "frontal" else rng.random() < 0.5
        marker_left = left
        x = margin if left else w - tw - margin
        y = int(rng.integers(int(th + 4 * unit), int(h * 0.3)))
        value = int(rng.integers(225, 256))
        cv2.putText(image, spec.marker, (x, y), FONT, scale, value, thick, cv2.LINE_AA)
        if rng.random() < 0.5:
            pad = int(3 * unit)
            cv2.rectangle(image, (x - pad, y - th - pad + 4), (x + tw + pad, y + pad), value, 1)
    if spec.text:
        scale = float(rng.uniform(0.3, 0.45)) * unit
        thick = 1
        # top right or top left, away from the marker
        corner = int(rng.integers(0, 2)) if marker_left is None else int(marker_left is False)
        y = int(rng.integers(int(12 * unit), int(22 * unit)))
        value = int(rng.integers(215, 256))
        for line in spec.text:
            tw, th = _text_box(line, scale, thick)
            x = w - tw - int(6 * unit) if corner == 0 else int(6 * unit)
            cv2.putText(image, line, (x, y), FONT, scale, value, thick, cv2.LINE_AA)
            y += th + int(3 * unit)
