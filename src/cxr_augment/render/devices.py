"""Support devices: tubes, lines, drains and pacemakers routed through the CT's anatomy.

A device is a 3-D path (voxel coordinates) built from the atlas landmarks with seeded jitter,
projected at the image's view and yaw, and drawn into the line-integral image as an additive
attenuation: a thin radio-opaque stripe (or wire) plus, for tubes, a faint plastic wall.
Because the path is projected geometrically, any yaw is exact and each image gets its own
course; the drawn pixels are the device's lesion mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEVICE_KINDS = ("endotracheal_tube", "nasogastric_tube", "central_line", "chest_drain", "pacemaker")


@dataclass(frozen=True)
class Stroke:
    """One line drawn along a path: width in millimetres, attenuation line integral added."""

    width_mm: float
    delta_l: float


# wall then stripe; the values are line integrals (1/mm * mm), comparable to a rib (~0.3-0.6)
STROKES = {
    "endotracheal_tube": (Stroke(7.0, 0.06), Stroke(1.2, 0.45)),
    "nasogastric_tube": (Stroke(4.0, 0.04), Stroke(1.0, 0.40)),
    "central_line": (Stroke(2.0, 0.05), Stroke(0.8, 0.55)),
    "chest_drain": (Stroke(9.0, 0.08), Stroke(1.5, 0.50)),
    "pacemaker": (Stroke(1.6, 0.9),),
}


def _smooth(points: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Chaikin corner cutting: a smooth curve through the waypoints' hull, ends kept."""
    p = np.asarray(points, dtype=np.float32)
    for _ in range(iterations):
        if len(p) < 3:
            break
        q = 0.75 * p[:-1] + 0.25 * p[1:]
        r = 0.25 * p[:-1] + 0.75 * p[1:]
        mid = np.empty((2 * len(q), 3), dtype=np.float32)
        mid[0::2], mid[1::2] = q, r
        p = np.vstack([p[:1], mid, p[-1:]])
    return p


def _jitter(rng: np.random.Generator, n: int, mm: float, spacing: np.ndarray) -> np.ndarray:
    return (rng.normal(0.0, mm, size=(n, 3)) / spacing).astype(np.float32)


def device_path(
    kind: str,
    landmarks: dict[str, np.ndarray],
    spacing_mm: tuple,
    rng: np.random.Generator,
    side: str | None = None,
) -> dict[str, np.ndarray]:
    """The 3-D course (voxel coordinates) of one device; a pacemaker also has a can.

    ``side`` places a chest drain (the side of a pneumothorax); None draws it at random.
    """
    sp = np.asarray(spacing_mm, dtype=np.float32)
    above = np.array([0.0, 0.0, 80.0 / sp[2]], dtype=np.float32)  # leaves the image upward
    if kind == "endotracheal_tube":
        t = landmarks["trachea"]
        carina = t[-1]
        tip = carina + np.array([0, 0, rng.uniform(20, 60) / sp[2]], np.float32)
        pts = np.vstack([t[0] + above, t[0], t[len(t) // 2], tip])
        pts += _jitter(rng, len(pts), 1.5, sp)
        return {"path": _smooth(pts)}
    if kind == "nasogastric_tube":
        o = landmarks["oesophagus"]
        s = landmarks["stomach"][0]
        pts = np.vstack([o[0] + above, o[:: max(1, len(o) // 6)], o[-1:], s])
        pts[-1] += np.array([rng.uniform(0, 40), rng.uniform(-10, 10), rng.uniform(-10, 20)]) / sp
        pts += _jitter(rng, len(pts), 1.5, sp)
        return {"path": _smooth(pts)}
    if kind == "central_line":
        side = "right" if rng.random() < 0.7 else "left"
        svc = landmarks["svc"]
        entry = landmarks[f"subclavian_{side}"][0] + np.array([0, 15, -8], np.float32) / sp
        lateral = entry + np.array([-60 if side == "right" else 60, 0, 10], np.float32) / sp
        tip = svc[-1] + np.array([0, 0, rng.uniform(-15, 10)], np.float32) / sp
        pts = np.vstack([lateral, entry, svc[0], svc[len(svc) // 2], tip])
        pts += _jitter(rng, len(pts), 2.0, sp)
        return {"path": _smooth(pts)}
    if kind == "chest_drain":
        side = side or ("right" if rng.random() < 0.5 else "left")
        wall = landmarks[f"chest_wall_{side}"]
        edge = landmarks[f"lateral_edge_{side}"]
        inward = 1.0 if side == "right" else -1.0
        outside = wall[0] - np.array([inward * 25, 0, 15], np.float32) / sp
        away = wall[0] - np.array([inward * 45, 0, 90], np.float32) / sp
        inner = wall[1] + np.array([inward * 4, 0, 0], np.float32) / sp
        route = edge[:: max(1, len(edge) // 4)] + np.array([inward * 6, 0, 0], np.float32) / sp
        apex = landmarks[f"apex_{side}"][0] - np.array([0, 0, 15], np.float32) / sp
        reach = rng.uniform(0.4, 1.0)
        route = route[: max(1, int(round(len(route) * reach)))]
        pts = np.vstack([away, outside, wall[0], inner, route] + ([apex] if reach > 0.8 else []))
        pts += _jitter(rng, len(pts), 2.0, sp)
        return {"path": _smooth(pts)}
    if kind == "pacemaker":
        side = "left" if rng.random() < 0.8 else "right"
        can = (
            landmarks[f"subclavian_{side}"][0]
            + np.array([(-1 if side == "right" else 1) * 25, 40, -35], np.float32) / sp
        )
        svc = landmarks["svc"]
        pts = np.vstack(
            [
                can,
                landmarks[f"subclavian_{side}"][0],
                svc[0],
                svc[-1],
                landmarks["right_atrium"][0],
                landmarks["rv_apex"][0],
            ]
        )
        pts += _jitter(rng, len(pts), 2.0, sp)
        return {"path": _smooth(pts), "can": can[None]}
    raise ValueError(f"unknown device kind {kind!r}; expected one of {DEVICE_KINDS}")


def draw_device(
    canvas: np.ndarray,
    kind: str,
    parts: dict[str, np.ndarray],
    to_pixels,
    pixel_mm: float,
    scratch: np.ndarray | None = None,
) -> np.ndarray:
    """Add one device's attenuation to ``canvas`` (float32 atlas image); return its mask.

    ``to_pixels`` maps (N, 3) voxel coordinates to (N, 2) atlas pixels (col, row).
    Lines are rasterised anti-aliased at 4x sub-pixel precision.
    """
    shift = 2  # cv2 fixed-point bits: coordinates in 1/4 pixel
    layer = np.zeros(canvas.shape, dtype=np.uint8) if scratch is None else scratch
    mask = np.zeros(canvas.shape, dtype=bool)
    pts = np.round(to_pixels(parts["path"]) * (1 << shift)).astype(np.int32)
    for stroke in STROKES[kind]:
        layer[:] = 0
        width = max(1, int(round(stroke.width_mm / pixel_mm)))
        cv2.polylines(layer, [pts.reshape(-1, 1, 2)], False, 255, width, cv2.LINE_AA, shift)
        canvas += layer.astype(np.float32) * (stroke.delta_l / 255.0)
        mask |= layer > 0
    if "can" in parts:
        layer[:] = 0
        c = to_pixels(parts["can"])[0]
        axes = (int(round(22 / pixel_mm)), int(round(18 / pixel_mm)))
        cv2.ellipse(layer, (int(c[0]), int(c[1])), axes, 15, 0, 360, 255, -1, cv2.LINE_AA)
        canvas += layer.astype(np.float32) * (2.5 / 255.0)
        mask |= layer > 0
    return mask
