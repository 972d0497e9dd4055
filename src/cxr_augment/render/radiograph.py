"""From the projection atlas to one 8-bit radiograph, in a few milliseconds.

Per image (every random choice comes from ``spec.seed`` or from the spec itself):

1. line integral L = soft + k_bone * bone at the patient's yaw, plus each finding's delta and
   each device's attenuation (all additive in L);
2. a single remap frames the chest and applies the patient's anatomy: anisotropic scaling
   (the depth scale multiplies L), in-plane rotation, a smooth elastic displacement;
3. quantum noise in the log domain: with N = dose * exp(-(L - L_ref)) photons a pixel, the
   standard deviation of L is 1 / sqrt(N);
4. detail enhancement (unsharp masking, linear in L, a kernel truncated at 3 sigma), then a
   window and a gamma tone curve (pointwise, from the atlas statistics, so a finding never
   shifts the window);
5. burned-in laterality marker and text, optional collimator shutters.

Steps 1-4 are local: a finding changes the image only within its projected support dilated by
the interpolation and unsharp kernels (``influence_radius_px``), which the tests check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from cxr_augment.render.atlas import ProjectionAtlas, atlas_pixel, yaw_index
from cxr_augment.render.devices import device_path, draw_device
from cxr_augment.render.overlay import burn_in
from cxr_augment.render.projector import paste


@dataclass(frozen=True)
class ImageSpec:
    """Everything that makes one image what it is (one row of the render plan)."""

    view: str  # "frontal" | "lateral"
    projection: str  # "AP" | "PA" | "LL" (laterals): drives the burned-in text
    seed: int  # noise and annotations of this image
    anatomy_seed: int = 0  # the patient's elastic shape (shared by the patient's images)
    device_seed: int = 0  # device courses (shared by the views of one study)
    yaw_deg: float = 0.0
    roll_deg: float = 0.0
    scale_lr: float = 1.0  # patient width (x)
    scale_ap: float = 1.0  # patient depth (y)
    scale_si: float = 1.0  # patient height (z)
    field_margin: float = 1.2  # field of view / chest width
    top_margin_mm: float = 10.0  # field top above the lung apex
    shift_mm: float = 0.0  # horizontal centring error
    elastic_mm: float = 3.0
    bone_gain: float = 1.0
    dose: float = 8000.0
    window_lo: float = 0.0  # offsets as fractions of the atlas window
    window_hi: float = 0.0
    gamma: float = 1.0
    unsharp_sigma_px: float = 3.0
    unsharp_amount: float = 0.8
    findings: tuple[str, ...] = ()  # atlas entry keys
    devices: tuple[str, ...] = ()
    drain_side: str | None = None
    text: tuple[str, ...] = ()
    marker: str = ""  # "R" | "L" | ""
    shutter: float = 0.0  # 0 none, else fraction of edge covered by a collimator band


@dataclass
class Rendered:
    image: np.ndarray  # uint8 (H, W)
    lesions: dict[str, np.ndarray] = field(default_factory=dict)  # key -> bool (H, W)
    supports: dict[str, np.ndarray] = field(default_factory=dict)  # key -> bool (H, W)


def influence_radius_px(spec: ImageSpec) -> int:
    """How far outside its support a change of L can reach in the output image."""
    return int(math.ceil(3.0 * spec.unsharp_sigma_px)) + 2  # unsharp kernel + interpolation


def output_pixel_mm(atlas: ProjectionAtlas, spec: ImageSpec, width: int) -> float:
    """Size of an output pixel at the patient, in millimetres."""
    frame = atlas.frame[spec.view]
    s_h = spec.scale_lr if spec.view == "frontal" else spec.scale_ap
    edges = ("left", "right") if spec.view == "frontal" else ("body_left", "body_right")
    chest_mm = (frame[edges[1]] - frame[edges[0]]) * atlas.geometry.pixel_mm * s_h
    return chest_mm * spec.field_margin / width


def _sample_map(atlas: ProjectionAtlas, spec: ImageSpec, height: int, width: int, rng):
    """Output pixel -> atlas pixel coordinates (float32 maps) and the output pixel size."""
    frame = atlas.frame[spec.view]
    px = atlas.geometry.pixel_mm
    s_h = spec.scale_lr if spec.view == "frontal" else spec.scale_ap
    s_v = spec.scale_si
    edges = ("left", "right") if spec.view == "frontal" else ("body_left", "body_right")
    centre_col = 0.5 * (frame[edges[0]] + frame[edges[1]])
    out_mm = output_pixel_mm(atlas, spec, width)
    half_h = 0.5 * (height - 1) * out_mm
    centre_row = frame["lung_top"] + (half_h / s_v - spec.top_margin_mm) / px
    centre_col += spec.shift_mm / px
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    u = (u - 0.5 * (width - 1)) * out_mm
    v = (v - 0.5 * (height - 1)) * out_mm
    c, s = math.cos(math.radians(spec.roll_deg)), math.sin(math.radians(spec.roll_deg))
    a_u = (c * u + s * v) / s_h
    a_v = (-s * u + c * v) / s_v
    if spec.elastic_mm > 0:
        grid = rng.normal(0.0, spec.elastic_mm, size=(2, 4, 4)).astype(np.float32)
        a_u += cv2.resize(grid[0], (width, height), interpolation=cv2.INTER_CUBIC)
        a_v += cv2.resize(grid[1], (width, height), interpolation=cv2.INTER_CUBIC)
    map_x = (centre_col + a_u / px).astype(np.float32)
    map_y = (centre_row + a_v / px).astype(np.float32)
    return map_x, map_y, out_mm


def render(
    atlas: ProjectionAtlas,
    spec: ImageSpec,
    height: int,
    width: int,
    with_masks: bool = False,
) -> Rendered:
    """Render one radiograph (uint8, ``height`` x ``width``) from the atlas."""
    rng = np.random.default_rng(spec.seed)
    device_rng = np.random.default_rng(spec.device_seed)
    yi = yaw_index(atlas, spec.yaw_deg)
    yaw = atlas.yaws_deg[yi]
    key = (spec.view, yi)
    line = atlas.soft[key] + np.float32(spec.bone_gain) * atlas.bone[key]
    for name in spec.findings:
        paste(line, atlas.entries[name].delta[key])
    # devices: each draws its own seeded course
    device_masks = {}
    if spec.devices:
        scratch = np.zeros(line.shape, dtype=np.uint8)
        for kind in spec.devices:
            parts = device_path(
                kind, atlas.landmarks, atlas.geometry.spacing_mm, device_rng, side=spec.drain_side
            )
            device_masks[kind] = draw_device(
                line,
                kind,
                parts,
                lambda p: atlas_pixel(atlas, spec.view, yaw, p),
                atlas.geometry.pixel_mm,
                scratch,
            )
    map_x, map_y, out_mm = _sample_map(
        atlas, spec, height, width, np.random.default_rng(spec.anatomy_seed)
    )
    # anti-aliasing for the atlas -> output minification
    ratio = out_mm / atlas.geometry.pixel_mm
    if ratio > 1.0:
        line = cv2.GaussianBlur(line, (3, 3), 0.5 * math.sqrt(ratio**2 - 1.0))
    depth = spec.scale_ap if spec.view == "frontal" else spec.scale_lr
    big = cv2.remap(line, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    big *= np.float32(depth)

    lo0, hi0 = atlas.window[key]
    lo0, hi0 = lo0 * depth, hi0 * depth
    span = hi0 - lo0
    lo = lo0 + spec.window_lo * span
    hi = hi0 + spec.window_hi * span
    # quantum noise, referenced to the dark end of the window
    sigma = np.sqrt(np.exp(np.clip(big - lo, -5.0, 8.0)) / np.float32(spec.dose))
    big += sigma * rng.standard_normal(big.shape, dtype=np.float32)
    # unsharp masking (linear): kernel truncated at 3 sigma
    k = 2 * int(math.ceil(3.0 * spec.unsharp_sigma_px)) + 1
    blur = cv2.GaussianBlur(big, (k, k), spec.unsharp_sigma_px, borderType=cv2.BORDER_REFLECT)
    big += np.float32(spec.unsharp_amount) * (big - blur)
    v = np.clip((big - lo) / (hi - lo), 0.0, 1.0) ** np.float32(spec.gamma)
    image = np.rint(v * 255.0).astype(np.uint8)
    burn_in(image, spec, rng)

    out = Rendered(image)
    if with_masks:
        canvas = np.zeros(line.shape, dtype=np.float32)
        for name in spec.findings:
            entry = atlas.entries[name]
            out.lesions[name] = _warp_mask(canvas, entry.lesion[key], map_x, map_y)
            support = entry.delta[key]
            out.supports[name] = _warp_mask(
                canvas, type(support)(support.row0, support.col0, support.data != 0), map_x, map_y
            )
        for kind, mask in device_masks.items():
            m = cv2.remap(mask.astype(np.uint8), map_x, map_y, cv2.INTER_NEAREST) > 0
            out.lesions[kind] = m
            out.supports[kind] = m
    return out


def _warp_mask(canvas: np.ndarray, crop, map_x, map_y) -> np.ndarray:
    canvas[:] = 0
    paste(canvas, type(crop)(crop.row0, crop.col0, crop.data.astype(np.float32)))
    # linear so any pixel that samples the support at all counts
    return cv2.remap(canvas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) > 0
