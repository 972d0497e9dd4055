"""The projection atlas: everything the per-image renderer needs, computed once from the CT.

Rendering a radiograph from the 35-million-voxel CT for every image would take about a second;
the atlas moves all 3-D work out of the per-image loop:

- base line integrals (soft tissue and bone excess, separately so bone contrast can vary) for
  each view at a small bank of patient yaws;
- a bank of findings, each simulated once in 3-D (``findings.py``) and projected at every view
  and yaw as an additive delta with its projected lesion mask;
- landmarks (airway, oesophagus, veins, heart, chest wall) that support devices are routed
  through, and the chest framing and exposure statistics per view.

Per image, the renderer then only adds a few 2-D crops, warps, adds noise and encodes.
"""

from __future__ import annotations

import math
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from cxr_augment.render import findings as fd
from cxr_augment.render.ct import (
    LUNG_LOBES_LEFT,
    LUNG_LOBES_RIGHT,
    AttenuationConfig,
    ChestCT,
    arm_cut,
    attenuation,
    without_arms,
)
from cxr_augment.render.projector import (
    VIEWS,
    Crop,
    Geometry,
    combine_slabs,
    paste,
    project,
    project_slabs,
    tight,
)

# The five simulated observations, as CheXpert names them.
FINDING_OBSERVATION = {
    "pneumothorax": "Pneumothorax",
    "pleural_effusion": "Pleural Effusion",
    "cardiomegaly": "Cardiomegaly",
    "lung_opacity": "Lung Opacity",
    "consolidation": "Consolidation",
}


@dataclass(frozen=True)
class FindingSpec:
    """One entry of the finding bank: a simulator and its arguments."""

    kind: str  # a key of FINDING_OBSERVATION
    side: str | None  # "right", "left" or None (heart)
    severity: int  # 1 (subtle) .. n (large), for stratified sampling
    args: dict

    @property
    def key(self) -> str:
        parts = [self.kind, self.side or "midline", f"s{self.severity}"]
        parts += [f"{k}={v}" for k, v in sorted(self.args.items()) if k not in ("side",)]
        return "/".join(str(p) for p in parts)


@dataclass
class FindingEntry:
    spec: FindingSpec
    delta: dict[tuple[str, int], Crop]  # (view, yaw index) -> attenuation line integral delta
    lesion: dict[tuple[str, int], Crop]  # (view, yaw index) -> bool projected lesion
    lesion_area_px: dict[tuple[str, int], int]
    lesion_mean_delta: dict[tuple[str, int], float]


@dataclass
class ProjectionAtlas:
    geometry: Geometry
    yaws_deg: tuple[float, ...]
    soft: dict[tuple[str, int], np.ndarray]
    bone: dict[tuple[str, int], np.ndarray]
    entries: dict[str, FindingEntry]
    landmarks: dict[str, np.ndarray]  # name -> (N, 3) voxel coordinates (x, y, z)
    frame: dict[str, dict[str, float]]  # view -> chest framing in atlas pixels
    window: dict[tuple[str, int], tuple[float, float]]  # (view, yaw) -> L percentiles
    config: dict = field(default_factory=dict)

    def entries_of(self, kind: str, side: str | None = None) -> list[FindingEntry]:
        return [
            e
            for e in self.entries.values()
            if e.spec.kind == kind and (side is None or e.spec.side == side)
        ]


def finding_bank(params: dict) -> list[FindingSpec]:
    """Expand the ``finding_bank`` parameters into one spec per simulated variant."""
    specs: list[FindingSpec] = []
    p = params["pneumothorax"]
    for side in p["sides"]:
        for kind in p["kinds"]:
            for sev, size in enumerate(p["sizes"], start=1):
                specs.append(FindingSpec("pneumothorax", side, sev, {"kind": kind, "size": size}))
    p = params["pleural_effusion"]
    for side in p["sides"]:
        for sev, (level, men) in enumerate(zip(p["levels"], p["meniscus_mm"], strict=True), 1):
            specs.append(
                FindingSpec("pleural_effusion", side, sev, {"level": level, "meniscus_mm": men})
            )
    p = params["cardiomegaly"]
    for sev, factor in enumerate(p["factors"], start=1):
        specs.append(FindingSpec("cardiomegaly", None, sev, {"factor": factor}))
    for kind in ("lung_opacity", "consolidation"):
        p = params[kind]
        for lobe in p["lobes"]:
            side = "right" if lobe in LUNG_LOBES_RIGHT else "left"
            for sev, cov in enumerate(p["coverages"], start=1):
                specs.append(
                    FindingSpec(
                        kind,
                        side,
                        sev,
                        {"lobe": lobe, "coverage": cov, "strength": p["strength"]},
                    )
                )
    return specs


def simulate(ct: ChestCT, spec: FindingSpec, seed: int) -> fd.FindingVolume:
    """Run the simulator a spec names."""
    a = spec.args
    if spec.kind == "pneumothorax":
        return fd.pneumothorax(ct, spec.side, a["kind"], a["size"])
    if spec.kind == "pleural_effusion":
        return fd.pleural_effusion(ct, spec.side, a["level"], a["meniscus_mm"])
    if spec.kind == "cardiomegaly":
        return fd.cardiomegaly(ct, a["factor"])
    if spec.kind in ("lung_opacity", "consolidation"):
        return fd.lung_opacity(ct, a["lobe"], a["coverage"], a["strength"], seed=seed)
    raise ValueError(f"unknown finding kind {spec.kind!r}")


# --- parallel bank construction ---------------------------------------------------------
# Forked workers share the CT with the parent copy-on-write. They run numpy, scipy and
# single-threaded OpenCV only: no thread pool is started or reconfigured after the fork.
_SHARED: dict = {}


def _entry_task(i: int) -> FindingEntry:
    ct, specs, cfg = _SHARED["ct"], _SHARED["specs"], _SHARED["cfg"]
    return _build_entry(ct, specs[i], cfg, seed=cfg["seed"] * 1000 + i)


def _build_bank(ct: ChestCT, specs: list[FindingSpec], cfg: dict, workers: int) -> list:
    if workers <= 1 or len(specs) < 2 or "fork" not in mp.get_all_start_methods():
        return [_build_entry(ct, s, cfg, seed=cfg["seed"] * 1000 + i) for i, s in enumerate(specs)]
    _SHARED.update(ct=ct, specs=specs, cfg=cfg)
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            return list(pool.map(_entry_task, range(len(specs))))
    finally:
        _SHARED.clear()


def _build_entry(ct: ChestCT, spec: FindingSpec, cfg: dict, seed: int) -> FindingEntry:
    geometry = Geometry(ct.hu.shape, ct.spacing_mm)
    att = AttenuationConfig(**cfg["attenuation"])
    fv = simulate(ct, spec, seed)
    soft_new, bone_new = attenuation(fv.new_hu, att)
    soft_old, bone_old = attenuation(fv.old_hu, att)
    delta_mu = (soft_new + bone_new) - (soft_old + bone_old)
    lesion_mu = fv.lesion.astype(np.float32)  # 1/mm: its line integral is a path length in mm
    pad = geometry.max_shift_px(max(abs(y) for y in cfg["yaws_deg"]))
    delta, lesion, area, mean_delta = {}, {}, {}, {}
    for view in VIEWS:
        d_slabs = project_slabs(delta_mu, geometry, view, cfg["slab_mm"], origin=fv.origin)
        l_slabs = project_slabs(lesion_mu, geometry, view, cfg["slab_mm"], origin=fv.origin)
        for yi, yaw in enumerate(cfg["yaws_deg"]):
            d = tight(combine_slabs(d_slabs, geometry, view, yaw, pad))
            length = combine_slabs(l_slabs, geometry, view, yaw, pad)
            mask = Crop(length.row0, length.col0, length.data > cfg["lesion_min_path_mm"])
            mask = tight(mask)
            delta[view, yi] = Crop(d.row0, d.col0, d.data.astype(np.float16))
            lesion[view, yi] = mask
            area[view, yi] = int(mask.data.sum())
            mean_delta[view, yi] = _mean_over(d, mask)
    return FindingEntry(spec, delta, lesion, area, mean_delta)


def _mean_over(values: Crop, mask: Crop) -> float:
    """Mean absolute value of ``values`` over the pixels of ``mask`` (both in the atlas grid)."""
    if mask.data.size == 0 or not mask.data.any():
        return 0.0
    rows, cols = np.nonzero(mask.data)
    r = rows + mask.row0 - values.row0
    c = cols + mask.col0 - values.col0
    ok = (r >= 0) & (r < values.data.shape[0]) & (c >= 0) & (c < values.data.shape[1])
    vals = np.zeros(rows.shape, dtype=np.float64)
    vals[ok] = np.abs(values.data[r[ok], c[ok]])
    return float(vals.mean())


def build_atlas(ct: ChestCT, params: dict) -> ProjectionAtlas:
    """Project the CT and its finding bank; ``params`` is the ``atlas`` parameter block."""
    att = AttenuationConfig(**params.get("attenuation", {}))
    cfg = {
        "attenuation": dict(params.get("attenuation", {})),
        "yaws_deg": tuple(float(y) for y in params["yaws_deg"]),
        "slab_mm": float(params["slab_mm"]),
        "lesion_min_path_mm": float(params["lesion_min_path_mm"]),
        "seed": int(params["seed"]),
    }
    geometry = Geometry(ct.hu.shape, ct.spacing_mm)
    cut = arm_cut(ct, int(params["arm_margin_vox"]))
    extend = int(round(float(params["extend_below_mm"]) / geometry.pixel_mm))
    soft, bone, window, outline = {}, {}, {}, {}
    for view in VIEWS:
        s_v, b_v, outline[view] = _base_projections(ct, geometry, view, cfg["yaws_deg"], att, cut)
        for yi in range(len(cfg["yaws_deg"])):
            soft[view, yi] = _extend_below(s_v[yi], extend)
            bone[view, yi] = _extend_below(b_v[yi], extend)
    frame = chest_frame(outline, float(params["frame_below_lungs_mm"]), geometry)
    for (view, yi), s in soft.items():
        f = frame[view]
        region = (s + bone[view, yi])[
            int(f["lung_top"]) : int(f["bottom"]), int(f["body_left"]) : int(f["body_right"])
        ]
        lo, hi = params["window_percentiles"]
        inside = region[region > params["window_min_line_integral"]]  # the patient, not air
        window[view, yi] = (float(np.percentile(inside, lo)), float(np.percentile(inside, hi)))

    specs = finding_bank(params["finding_bank"])
    built = _build_bank(ct, specs, cfg, max(1, int(params.get("workers", 1))))
    entries = {e.spec.key: e for e in built}
    return ProjectionAtlas(
        geometry=geometry,
        yaws_deg=cfg["yaws_deg"],
        soft=soft,
        bone=bone,
        entries=entries,
        landmarks=device_landmarks(ct),
        frame=frame,
        window=window,
        config=cfg,
    )


def _extend_below(image: np.ndarray, rows: int) -> np.ndarray:
    """Continue the image below the CT's last slice, for fields that reach the abdomen.

    Each new row is the last row blurred sideways by a width that grows with the distance,
    so the body outline and the spine continue while slice detail fades out.
    """
    if rows <= 0:
        return image
    last = image[-1].astype(np.float32)
    ext = np.empty((rows, image.shape[1]), dtype=np.float32)
    for i in range(rows):
        sigma = 1.0 + 0.25 * i
        k = 2 * int(3 * sigma) + 1
        ext[i] = cv2.GaussianBlur(last[None, :], (k, 1), sigma, borderType=cv2.BORDER_REPLICATE)[0]
    return np.vstack([image, ext])


def _base_projections(ct, geometry, view, yaws, att, cut, chunk: int = 24):
    """Soft and bone line integrals at each yaw, and the yaw-0 lung and body outlines.

    Works through the volume a slab of slices at a time (projection is exact per slab; see
    ``projector._resample_rows``), so memory stays at a few slabs, not a few volumes.
    """
    shape = geometry.atlas_shape(view)
    soft = [np.zeros(shape, np.float32) for _ in yaws]
    bone = [np.zeros(shape, np.float32) for _ in yaws]
    lung = np.zeros(shape, np.float32)
    body = np.zeros(shape, np.float32)
    lung_ids = ct.ids_of(*LUNG_LOBES_RIGHT, *LUNG_LOBES_LEFT)
    for z0 in range(0, ct.hu.shape[2], chunk):
        hu = ct.hu[:, :, z0 : z0 + chunk]
        if view == "lateral":
            hu = without_arms(hu, cut, z0)
        s_mu, b_mu = attenuation(hu, att)
        origin = (0, 0, z0)
        for yi, yaw in enumerate(yaws):
            paste(soft[yi], project(s_mu, geometry, view, yaw, origin))
            paste(bone[yi], project(b_mu, geometry, view, yaw, origin))
        lung_mask = np.isin(ct.labels[:, :, z0 : z0 + chunk], lung_ids).astype(np.float32)
        paste(lung, project(lung_mask, geometry, view, 0.0, origin))
        paste(body, project((hu > -500.0).astype(np.float32), geometry, view, 0.0, origin))
    return soft, bone, {"lung": lung > 0, "body": body > 0}


def chest_frame(outline: dict, below_lungs_mm: float, geometry: Geometry) -> dict[str, dict]:
    """Where the chest sits in each view's atlas image: lung box, body box, in pixels."""
    out = {}
    for view, o in outline.items():
        lp, bp = o["lung"], o["body"]
        lr, lc = np.flatnonzero(lp.any(1)), np.flatnonzero(lp.any(0))
        bc = np.flatnonzero(bp[lr[0] : lr[-1] + 1].any(0))
        bottom = min(lr[-1] + below_lungs_mm / geometry.pixel_mm, lp.shape[0])
        out[view] = {
            "top": 0.0,
            "bottom": float(bottom),
            "left": float(lc[0]),
            "right": float(lc[-1] + 1),
            "lung_top": float(lr[0]),
            "lung_bottom": float(lr[-1] + 1),
            "body_left": float(bc[0]),
            "body_right": float(bc[-1] + 1),
        }
    return out


def _points(ct: ChestCT, *names: str) -> np.ndarray:
    """Voxel coordinates (N, 3) of the named structures, found inside their bounding box."""
    box = ct.box_of(*names)
    idx = np.argwhere(ct.mask_of(*names, labels=ct.labels[box])).astype(np.float32)
    return idx + np.array([b.start for b in box], dtype=np.float32)


def _centreline(points: np.ndarray) -> np.ndarray:
    """Per-slice centroids of a tubular structure's voxels, from the top slice down."""
    zs = np.unique(points[:, 2])[::-1]
    return np.asarray([points[points[:, 2] == z].mean(0) for z in zs], dtype=np.float32)


def device_landmarks(ct: ChestCT) -> dict[str, np.ndarray]:
    """Anatomical waypoints that tubes, lines and drains follow, in voxel coordinates."""
    lm: dict[str, np.ndarray] = {}
    lm["trachea"] = _centreline(_points(ct, "trachea"))
    lm["oesophagus"] = _centreline(_points(ct, "esophagus"))
    lm["stomach"] = _points(ct, "stomach").mean(0)[None]
    lm["svc"] = _centreline(_points(ct, "superior_vena_cava"))
    heart = _points(ct, "heart")
    z_lo, z_hi = np.percentile(heart[:, 2], [10, 90])
    right_part = heart[heart[:, 0] < np.percentile(heart[:, 0], 15)]
    lm["right_atrium"] = right_part.mean(0)[None]
    low = heart[heart[:, 2] < z_lo + 0.3 * (z_hi - z_lo)]
    lm["rv_apex"] = low[low[:, 0] > np.percentile(low[:, 0], 80)].mean(0)[None]
    for side, clav in (("right", "clavicula_right"), ("left", "clavicula_left")):
        lm[f"subclavian_{side}"] = _points(ct, clav).mean(0)[None]
        lung = _points(ct, *(LUNG_LOBES_RIGHT if side == "right" else LUNG_LOBES_LEFT))
        top = lung[lung[:, 2] >= lung[:, 2].max() - 2]
        lm[f"apex_{side}"] = top.mean(0)[None]
        # mid-axillary entry at ~45 % of the lung height: the outermost body voxel there
        zk = int(round(lung[:, 2].min() + 0.45 * np.ptp(lung[:, 2])))
        yk = int(round(lung[:, 1].mean()))
        row = np.flatnonzero(ct.body[:, yk, zk]) if ct.body is not None else np.array([0, 511])
        x_wall = float(row[0] if side == "right" else row[-1])
        lung_row = lung[(np.abs(lung[:, 2] - zk) < 1) & (np.abs(lung[:, 1] - yk) < 2)]
        x_pleura = float(lung_row[:, 0].min() if side == "right" else lung_row[:, 0].max())
        lm[f"chest_wall_{side}"] = np.array([[x_wall, yk, zk], [x_pleura, yk, zk]], np.float32)
        # the lateral lung edge, from the entry level to the apex
        edge = []
        for k in range(zk, int(lung[:, 2].max()) + 1, 4):
            sl = lung[np.abs(lung[:, 2] - k) < 1]
            if len(sl):
                x = sl[:, 0].min() if side == "right" else sl[:, 0].max()
                edge.append((x, float(np.median(sl[:, 1])), float(k)))
        lm[f"lateral_edge_{side}"] = np.asarray(edge, np.float32)
    return lm


def yaw_index(atlas: ProjectionAtlas, yaw_deg: float) -> int:
    """The bank yaw closest to ``yaw_deg``."""
    return int(np.argmin([abs(y - yaw_deg) for y in atlas.yaws_deg]))


def atlas_pixel(
    atlas: ProjectionAtlas, view: str, yaw_deg: float, points: np.ndarray
) -> np.ndarray:
    """Project voxel coordinates (N, 3) to atlas pixel (col, row) at a view and yaw."""
    g = atlas.geometry
    dx, dy, dz = g.spacing_mm
    t = math.tan(math.radians(yaw_deg))
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    if view == "frontal":
        col = x - (y - (g.shape[1] - 1) / 2.0) * (dy / dx) * t
    else:
        col = (g.shape[1] - 1) - y + (x - (g.shape[0] - 1) / 2.0) * (dx / dy) * t
    row = ((g.shape[2] - 1) * dz - z * dz) / g.pixel_mm
    return np.stack([col, row], axis=1)
