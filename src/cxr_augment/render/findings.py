"""Findings simulated in 3-D from the TotalSegmentator label map.

Each simulator edits the Hounsfield units of a sub-volume around one structure and returns what
changed: the new and old HU (their attenuation difference is projected and added to the healthy
radiograph) and the lesion mask (what a radiologist would outline). Voxels outside the returned
support are untouched, so a finding can only change the pixels its support projects onto.

They work on the render grid (``ct.resample_z``: slices interpolated and smoothed along z), the
same volume the healthy projections come from, so an edit that barely moves tissue barely
changes the image.

- Pneumothorax: the lung collapses toward its hilum (a direction-dependent factor puts the air
  at the apex or along the lateral wall); each voxel of the new lung takes the density at
  hilum + (p - hilum) / s, scaled by 1 / s^3 so lung mass is conserved; the freed pleural space
  becomes air, and the visceral pleura is kept as a thin line of soft tissue.
- Pleural effusion: water fills the dependent lung below a surface that rises toward the
  lateral and posterior chest wall (a meniscus), blunting the costophrenic angle.
- Cardiomegaly: the heart is scaled about a point near its right border, so it grows to the
  left and down, replacing the lung and fat it covers.
- Lung opacity / consolidation: a smooth random blob inside one lobe moves lung density toward
  water; airways (below -950 HU) stay air, leaving air bronchograms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from cxr_augment.render.ct import LUNG_LOBES_LEFT, LUNG_LOBES_RIGHT, ChestCT, bone_ids

# lung parenchyma is air-filled: this bounds the lung by its density, not by the coarse label
PARENCHYMA_MAX_HU = -400.0


@dataclass
class FindingVolume:
    """What a finding changed, on a sub-volume of the CT grid."""

    origin: tuple[int, int, int]  # voxel index of [0, 0, 0] in the full CT grid
    new_hu: np.ndarray  # float32 sub-volume after the edit
    old_hu: np.ndarray  # float32 sub-volume before
    lesion: np.ndarray  # bool: the abnormal region
    support: np.ndarray  # bool: every voxel whose value may have changed

    def __post_init__(self) -> None:
        changed = self.new_hu != self.old_hu
        if (changed & ~self.support).any():
            raise AssertionError("a finding changed voxels outside its declared support")


@dataclass
class SubVolume:
    origin: tuple[int, int, int]
    hu: np.ndarray
    labels: np.ndarray
    spacing_mm: tuple[float, float, float]

    @property
    def spacing(self) -> np.ndarray:
        return np.asarray(self.spacing_mm, dtype=np.float32)


def sub_volume(ct: ChestCT, box: tuple[slice, slice, slice]) -> SubVolume:
    """A box of the CT (from ``ChestCT.box_of``)."""
    return SubVolume(
        origin=(box[0].start, box[1].start, box[2].start),
        hu=ct.hu[box],
        labels=ct.labels[box],
        spacing_mm=ct.spacing_mm,
    )


def _sample(volume: np.ndarray, q: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Trilinear samples of ``volume`` (X, Y, Z, C) at millimetre points q (N, 3).

    Returns (N, C), 0 outside the volume.
    """
    coords = (q / spacing).T
    return np.stack(
        [
            ndi.map_coordinates(volume[..., c], coords, order=1, mode="constant", cval=0.0)
            for c in range(volume.shape[3])
        ],
        axis=1,
    )


def _presmooth(volume: np.ndarray, sigma_vox: float) -> np.ndarray:
    """Smooth before resampling at scaled, fractional positions.

    Linear interpolation blurs by an amount that depends on the fractional position, so a
    minifying map prints a moire of alternating sharpness (and a label map, a staircase);
    a little uniform smoothing first makes the blur the same everywhere.
    """
    return ndi.gaussian_filter(volume.astype(np.float32), sigma_vox, mode="nearest")


def _lung(ct: ChestCT, sv: SubVolume, side: str) -> np.ndarray:
    """One lung: its label (grown by two voxels) where the tissue is air-filled."""
    names = LUNG_LOBES_RIGHT if side == "right" else LUNG_LOBES_LEFT
    label = ndi.binary_dilation(ct.mask_of(*names, labels=sv.labels), iterations=2)
    return label & (sv.hu < PARENCHYMA_MAX_HU)


def _check_side(side: str) -> None:
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")


def _lung_box(ct: ChestCT, side: str, margin: int) -> SubVolume:
    names = LUNG_LOBES_RIGHT if side == "right" else LUNG_LOBES_LEFT
    return sub_volume(ct, ct.box_of(*names, margin=margin))


def pneumothorax(
    ct: ChestCT, side: str, kind: str, size: float, pleural_line_hu: float = -350.0
) -> FindingVolume:
    """Collapse one lung toward its hilum; the freed pleural space fills with air.

    Args:
        side: "right" or "left" (the patient's).
        kind: "apical" (air over the apex), "lateral" (along the lateral wall) or "global".
        size: largest fractional collapse, 0 < size < 0.9 (0.1 subtle, 0.45 large).
        pleural_line_hu: density given to the visceral pleura facing the air.
    """
    _check_side(side)
    if not 0.0 < size < 0.9:
        raise ValueError(f"pneumothorax size must be in (0, 0.9), got {size}")
    sv = _lung_box(ct, side, margin=6)
    lung = _lung(ct, sv, side)
    idx = np.argwhere(lung)
    pos = idx.astype(np.float32) * sv.spacing  # (N, 3) mm, lung voxels only
    medial_q = 85 if side == "right" else 15  # the right lung's medial side is toward +x
    hilum = np.array(
        [
            np.percentile(pos[:, 0], medial_q),
            pos[:, 1].mean(),
            pos[:, 2].min() + 0.6 * np.ptp(pos[:, 2]),
        ],
        dtype=np.float32,
    )
    d = pos - hilum
    r = np.linalg.norm(d, axis=1) + 1e-3
    if kind == "apical":
        weight = np.clip(d[:, 2] / r, 0.0, 1.0) ** 1.5
    elif kind == "lateral":
        outward = -d[:, 0] if side == "right" else d[:, 0]
        # along the lateral wall, not under the lung base
        weight = np.clip(outward / r, 0.0, 1.0) ** 1.5 * (1.0 - np.clip(-d[:, 2] / r, 0.0, 1.0))
    elif kind == "global":
        weight = np.ones_like(r)
    else:
        raise ValueError(f"pneumothorax kind must be apical, lateral or global, got {kind!r}")
    s = 1.0 - size * weight  # 1 = untouched, smaller = more collapse
    moving = s < 1.0
    q = hilum + d[moving] / s[moving, None]
    channels = np.stack([_presmooth(lung, 1.0), _presmooth(sv.hu + 1000.0, 1.0)], axis=-1)
    sampled = _sample(channels, q, sv.spacing)
    inside = sampled[:, 0] > 0.5
    # conserve mass: the same tissue squeezed into s^3 of the volume
    dense = np.minimum(-1000.0 + sampled[:, 1] / s[moving] ** 3, 100.0)
    ii = idx[moving]
    new_hu = sv.hu.copy()
    new_hu[ii[:, 0], ii[:, 1], ii[:, 2]] = np.where(inside, dense, -1000.0)
    air = np.zeros_like(lung)
    air[ii[~inside, 0], ii[~inside, 1], ii[~inside, 2]] = True
    support = np.zeros_like(lung)
    support[ii[:, 0], ii[:, 1], ii[:, 2]] = True
    # visceral pleura: moved lung voxels that touch the new air
    pleura = support & ~air & ndi.binary_dilation(air)
    new_hu[pleura] = np.maximum(new_hu[pleura], pleural_line_hu)
    return FindingVolume(sv.origin, new_hu, sv.hu, air, support)


def pleural_effusion(
    ct: ChestCT,
    side: str,
    level: float,
    meniscus_mm: float,
    meniscus_width_mm: float = 25.0,
    fluid_hu: float = 15.0,
) -> FindingVolume:
    """Water in the dependent pleural space of one side, up to a meniscus.

    Args:
        level: height of the fluid surface, as a fraction of the lung's height above its
            lowest voxel (0.1 fills the posterior recess, 0.45 is a large effusion).
        meniscus_mm: how far the surface rises against the lateral and posterior chest wall.
        meniscus_width_mm: decay length of that rise away from the wall.
    """
    _check_side(side)
    if not 0.0 < level < 0.8:
        raise ValueError(f"effusion level must be in (0, 0.8), got {level}")
    sv = _lung_box(ct, side, margin=2)
    lung = _lung(ct, sv, side)
    dx, dy, dz = sv.spacing_mm
    # distance to the lateral wall (along x) and to the posterior wall (along y), per voxel
    xs = np.arange(lung.shape[0], dtype=np.float32)[:, None, None]
    ys = np.arange(lung.shape[1], dtype=np.float32)[None, :, None]
    big = np.float32(1e6)
    if side == "right":  # the right lung's lateral wall is at low x
        wall_x = np.where(lung, xs, big).min(axis=0, keepdims=True)
        d_lat = (xs - wall_x) * dx
    else:
        wall_x = np.where(lung, xs, -big).max(axis=0, keepdims=True)
        d_lat = (wall_x - xs) * dx
    wall_y = np.where(lung, ys, big).min(axis=1, keepdims=True)
    d_post = (ys - wall_y) * dy
    d_wall = np.clip(np.minimum(d_lat, d_post), 0.0, None)  # rows without lung: unused
    zs = np.flatnonzero(lung.any(axis=(0, 1)))
    z_lo, z_hi = zs[0] * dz, zs[-1] * dz
    surface = z_lo + level * (z_hi - z_lo) + meniscus_mm * np.exp(-d_wall / meniscus_width_mm)
    z = np.arange(lung.shape[2], dtype=np.float32)[None, None, :] * dz
    fluid = lung & (z < surface)
    # a smooth surface, not the voxel staircase of the threshold
    fluid = lung & (_presmooth(fluid, 1.0) > 0.5)
    new_hu = sv.hu.copy()
    new_hu[fluid] = fluid_hu
    return FindingVolume(sv.origin, new_hu, sv.hu, fluid, fluid)


def cardiomegaly(
    ct: ChestCT, factor: float, heart_hu: tuple[float, float] = (20.0, 70.0)
) -> FindingVolume:
    """Enlarge the heart: in-plane scale ``factor`` below its base, 1 at the base.

    The scale grows from 1 at the top of the heart (where the great vessels leave, which stay
    put) to ``factor`` at mid-height and below, about a point near the right heart border, so
    the left border and the apex move out and down as in a dilated left ventricle.
    """
    if not 1.0 < factor < 2.0:
        raise ValueError(f"cardiomegaly factor must be in (1, 2), got {factor}")
    hb = ct.box_of("heart", margin=2)
    grow = [int(np.ceil((factor - 1.0) * (b.stop - b.start))) + 4 for b in hb[:2]]
    box = tuple(
        slice(max(b.start - g, 0), min(b.stop + g, n))
        for b, g, n in zip(hb, [*grow, 0], ct.hu.shape, strict=True)
    )
    sv = sub_volume(ct, box)  # the heart may grow by its full width in-plane, not in z
    heart = ct.mask_of("heart", labels=sv.labels)
    pos = np.argwhere(heart).astype(np.float32) * sv.spacing
    z_top, z_bottom = np.percentile(pos[:, 2], 98), np.percentile(pos[:, 2], 2)
    c = np.array([np.percentile(pos[:, 0], 20), pos[:, 1].mean()], dtype=np.float32)
    # candidates: soft tissue or lung within reach of the scaled heart, never bone (labels
    # are 2.5 mm coarse in z, so sparing other organs by label would carve a staircase)
    lo = np.maximum(((pos[:, :2].min(0) - c) * factor + c) / sv.spacing[:2] - 2, 0).astype(int)
    hi = (((pos[:, :2].max(0) - c) * factor + c) / sv.spacing[:2] + 3).astype(int)
    reach = np.zeros_like(heart)
    reach[lo[0] : hi[0], lo[1] : hi[1], :] = True
    cand = reach & ~np.isin(sv.labels, bone_ids(ct.structures)) & (sv.hu < 150.0)
    ii = np.argwhere(cand)
    p = ii.astype(np.float32) * sv.spacing
    # 1 at the base, factor from mid-height down (smoothstep in between)
    t = np.clip((z_top - p[:, 2]) / max(0.5 * (z_top - z_bottom), 1e-3), 0.0, 1.0)
    f = 1.0 + (factor - 1.0) * t * t * (3.0 - 2.0 * t)
    q = p.copy()
    q[:, :2] = c + (p[:, :2] - c) / f[:, None]
    channels = np.stack([_presmooth(heart, 1.5), _presmooth(sv.hu, 1.0)], axis=-1)
    sampled = _sample(channels, q, sv.spacing)
    inside = sampled[:, 0] > 0.5
    new_hu = sv.hu.copy()
    jj = ii[inside]
    new_hu[jj[:, 0], jj[:, 1], jj[:, 2]] = np.clip(sampled[inside, 1], *heart_hu)
    support = new_hu != sv.hu
    return FindingVolume(sv.origin, new_hu, sv.hu, support & ~heart, support)


def lung_opacity(
    ct: ChestCT,
    lobe: str,
    coverage: float,
    strength: float,
    seed: int,
    target_hu: float = 30.0,
    airway_hu: float = -950.0,
    blob_mm: float = 18.0,
) -> FindingVolume:
    """A smooth random region of one lobe moved toward water density.

    Args:
        lobe: a lung lobe structure name, e.g. "lung_lower_lobe_right".
        coverage: fraction of the lobe the opacity covers (0 < coverage <= 1).
        strength: how far toward ``target_hu`` (0.4 ground glass, 0.9 consolidation).
        seed: seeds the random shape.
    """
    if lobe not in LUNG_LOBES_RIGHT + LUNG_LOBES_LEFT:
        raise ValueError(f"not a lung lobe: {lobe!r}")
    if not (0.0 < coverage <= 1.0 and 0.0 < strength <= 1.0):
        raise ValueError(f"coverage and strength must be in (0, 1], got {coverage}, {strength}")
    sv = sub_volume(ct, ct.box_of(lobe, margin=4))
    # the lobe label is 2.5 mm coarse in z: soften it so the opacity has no slice steps
    lobe_weight = np.clip(_presmooth(ct.mask_of(lobe, labels=sv.labels), 2.0) * 2.0 - 0.5, 0, 1)
    region = (lobe_weight > 0) & (sv.hu < PARENCHYMA_MAX_HU)
    rng = np.random.default_rng(seed)
    coarse_shape = [
        max(2, int(np.ceil(n * d / blob_mm)) + 1)
        for n, d in zip(sv.hu.shape, sv.spacing_mm, strict=True)
    ]
    coarse = rng.standard_normal(coarse_shape).astype(np.float32)
    zoom = [(n - 1) / (c - 1) for n, c in zip(sv.hu.shape, coarse_shape, strict=True)]
    field = ndi.zoom(coarse, zoom, order=1, grid_mode=False)
    field = field[tuple(slice(0, n) for n in sv.hu.shape)]
    field = ndi.gaussian_filter(field, [blob_mm / 4 / d for d in sv.spacing_mm])
    values = field[region]
    threshold = np.quantile(values, 1.0 - coverage)
    spread = max(float(values.std()) * 0.5, 1e-6)
    alpha = np.clip((field - threshold) / spread, 0.0, 1.0) * strength * lobe_weight
    alpha[~region | (sv.hu < airway_hu)] = 0.0
    new_hu = np.where(alpha > 0, sv.hu + alpha * (target_hu - sv.hu), sv.hu).astype(np.float32)
    support = alpha > 0
    return FindingVolume(sv.origin, new_hu, sv.hu, alpha > 0.25 * strength, support)
