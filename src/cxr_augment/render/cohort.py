"""The synthetic cohort: patients, studies, views, report labels, truth, and one render spec
per image.

Labels come first, then the truth, then the picture:

1. Patients get a sex, an age and 1-3 studies (valid and test: one study, as released); a study
   has one or two views (frontal, plus a lateral).
2. Report labels are drawn per study (the views of a study share their report) from a
   Gaussian copula: each observation's latent score mixes a patient "sickness" factor, a study
   "procedure / intensive care" factor and noise. Studies are ranked by the score and filled,
   image by image, into positive, then uncertain, then negative / not mentioned until each
   category holds its target share of images (thesis Table 1 by default), so the marginals
   hold to within one study at any size while observations stay realistically correlated.
3. The truth follows the label like a report labeler's noise: P(truth | label) per
   observation (an uncertain mention is often but not always disease; a few positives are
   wrong; a few unmentioned images are sick).
4. Rendered observations (pneumothorax, effusion, cardiomegaly, opacity / consolidation,
   support devices) pick a finding from the atlas bank for every truly positive study; chest
   drains are more frequent with a pneumothorax, on its side. Anatomy is per patient;
   positioning and exposure per image (portable AP films are noisier and more rotated).

Everything is drawn from one seeded generator in a fixed order: same seed, same cohort.
"""

from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np
import pandas as pd

from cxr_augment.preprocess import chexpert as cx
from cxr_augment.render.atlas import ProjectionAtlas
from cxr_augment.render.ct import LUNG_LOBES_LEFT, LUNG_LOBES_RIGHT
from cxr_augment.render.radiograph import ImageSpec, output_pixel_mm

SPLITS = ("train", "valid", "test")
CATEGORY_VALUE = {"positive": 1.0, "uncertain": -1.0, "negative": 0.0, "not_mentioned": np.nan}
RENDERED = (
    "Pneumothorax",
    "Pleural Effusion",
    "Cardiomegaly",
    "Lung Opacity",
    "Consolidation",
    "Support Devices",
)


def label_fractions(overrides: dict | None = None) -> dict[str, tuple[float, float, float, float]]:
    """(positive, uncertain, negative, not mentioned) shares per observation.

    Thesis Table 1 unless ``overrides`` gives an observation its own four shares.
    """
    out = {o: tuple(c / cx.TABLE1_IMAGES for c in counts) for o, counts in cx.TABLE1_COUNTS.items()}
    for obs, shares in (overrides or {}).items():
        if obs not in out:
            raise ValueError(f"label_fractions: unknown observation {obs!r}")
        if len(shares) != 4 or abs(sum(shares) - 1.0) > 1e-6 or min(shares) < 0:
            raise ValueError(f"label_fractions[{obs!r}]: four shares summing to 1, got {shares}")
        out[obs] = tuple(float(s) for s in shares)
    return out


# --- 1. patients, studies, views -----------------------------------------------------------


def _studies(split: str, n_images: int, params: dict, rng: np.random.Generator) -> pd.DataFrame:
    """One row per image of a split, with patient, study, view and demographics."""
    spp = params["studies_per_patient"]
    two_view = params["two_view_fraction"][split]
    rows = []
    patient = cx.FIRST_PATIENT[split]
    while len(rows) < n_images:
        if patient > cx.LAST_PATIENT[split]:
            raise ValueError(
                f"{split}: {n_images} images need more patients than the release numbers "
                f"({cx.FIRST_PATIENT[split]}-{cx.LAST_PATIENT[split]})"
            )
        sex = rng.choice(list(params["sex_weights"]), p=_normalised(params["sex_weights"]))
        age = int(
            np.clip(
                rng.normal(params["age"]["mean"], params["age"]["sd"]),
                params["age"]["min"],
                params["age"]["max"],
            )
        )
        n_studies = (
            1 if split != "train" else int(rng.choice(spp["values"], p=_normalised(spp["weights"])))
        )
        for study in range(1, n_studies + 1):
            views = ["frontal", "lateral"] if rng.random() < two_view else ["frontal"]
            projection = "AP" if rng.random() < params["ap_fraction"] else "PA"
            for v_index, view in enumerate(views, start=1):
                if len(rows) == n_images:
                    break
                rows.append(
                    {
                        "split": split,
                        "patient_id": patient,
                        "study_id": study,
                        "view_index": v_index,
                        "view": view,
                        "Sex": sex,
                        "Age": age,
                        "Frontal/Lateral": cx.FRONTAL if view == "frontal" else cx.LATERAL,
                        "AP/PA": projection if view == "frontal" else "",
                    }
                )
            age = min(age + int(rng.integers(0, 2)), params["age"]["max"])
        patient += 1
    df = pd.DataFrame(rows)
    df["Path"] = [
        cx.image_path(s, p, st, vi, v)
        for s, p, st, vi, v in zip(
            df.split, df.patient_id, df.study_id, df.view_index, df.view, strict=True
        )
    ]
    return df


def _normalised(weights) -> np.ndarray:
    w = np.asarray(list(weights.values()) if isinstance(weights, dict) else weights, dtype=float)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(w)}")
    return w / w.sum()


# --- 2. report labels by copula and image quotas ----------------------------------------------


def _quota_labels(
    score: np.ndarray, order2: np.ndarray, weights: np.ndarray, shares: tuple[float, ...]
) -> np.ndarray:
    """Fill studies, highest score first, into positive then uncertain; the rest, by
    ``order2``, into negative then not mentioned, until each holds its share of images."""
    n_img = weights.sum()
    target = np.rint(np.asarray(shares) * n_img).astype(int)
    out = np.full(score.shape, np.nan)
    order = np.argsort(-score, kind="stable")
    before = np.cumsum(weights[order]) - weights[order]
    pos = before < target[0]
    unc = ~pos & (before < target[0] + target[1])
    out[order[pos]] = cx.POSITIVE
    out[order[unc]] = cx.UNCERTAIN
    rest = order[~(pos | unc)]
    rest = rest[np.argsort(-order2[rest], kind="stable")]
    before = np.cumsum(weights[rest]) - weights[rest]
    out[rest[before < target[2]]] = cx.NEGATIVE
    return out


def _study_labels(studies: pd.DataFrame, params: dict, rng: np.random.Generator) -> pd.DataFrame:
    """Report labels for each study (rows: studies, columns: observations)."""
    shares = label_fractions(params.get("label_fractions"))
    lat = params["latent"]
    n = len(studies)
    patients = studies["patient_id"].to_numpy()
    uniq, inv = np.unique(patients, return_inverse=True)
    g_patient = rng.standard_normal(len(uniq))[inv]
    share = lat["patient_share"]
    sick = np.sqrt(share) * g_patient + np.sqrt(1 - share) * rng.standard_normal(n)
    icu = rng.standard_normal(n)
    weights = studies["n_images"].to_numpy()
    labels = {}
    for obs in cx.OBSERVATIONS:
        if obs == "No Finding":
            continue
        a = lat["sickness_loading"].get(obs, lat["sickness_loading"]["default"])
        b = lat["procedure_loading"].get(obs, lat["procedure_loading"]["default"])
        if a * a + b * b >= 1:
            raise ValueError(f"latent loadings for {obs!r}: a^2 + b^2 must be < 1")
        score = a * sick + b * icu + np.sqrt(1 - a * a - b * b) * rng.standard_normal(n)
        # explicit negatives are written in follow-up reports (after a procedure)
        order2 = 0.5 * icu + rng.standard_normal(n)
        labels[obs] = _quota_labels(score, order2, weights, shares[obs])
    out = pd.DataFrame(labels, index=studies.index)
    mentioned = np.isin(out[list(cx.PATHOLOGIES)].to_numpy(), [cx.POSITIVE, cx.UNCERTAIN])
    out["No Finding"] = np.where(mentioned.any(axis=1), np.nan, cx.POSITIVE)
    return out[list(cx.OBSERVATIONS)]


# --- 3. truth given the label ---------------------------------------------------------------


def _truth(labels: pd.DataFrame, params: dict, rng: np.random.Generator) -> pd.DataFrame:
    """0/1 truth per study and observation, drawn from P(truth | report label)."""
    ppv = params["truth_given_label"]
    out = {}
    for obs in cx.OBSERVATIONS:
        if obs == "No Finding":
            continue
        p = ppv.get(obs, ppv["default"])
        lab = labels[obs].to_numpy()
        prob = np.select(
            [lab == cx.POSITIVE, lab == cx.UNCERTAIN, lab == cx.NEGATIVE],
            [p["positive"], p["uncertain"], p["negative"]],
            p["not_mentioned"],
        )
        out[obs] = (rng.random(len(lab)) < prob).astype(np.int8)
    truth = pd.DataFrame(out, index=labels.index)
    # a consolidation is an opacity
    truth["Lung Opacity"] = truth["Lung Opacity"] | truth["Consolidation"]
    truth["No Finding"] = (truth[list(cx.PATHOLOGIES)].sum(axis=1) == 0).astype(np.int8)
    return truth[list(cx.OBSERVATIONS)]


# --- 4. findings, devices, anatomy, exposure -------------------------------------------------


def _pick(atlas: ProjectionAtlas, kind: str, side: str | None, weights, rng, lobes=None) -> str:
    """A bank entry of ``kind`` on ``side``, severity drawn with ``weights``."""
    cands = [
        e.spec
        for e in atlas.entries_of(kind, side)
        if lobes is None or e.spec.args.get("lobe") in lobes
    ]
    if not cands:
        raise ValueError(f"the atlas has no {kind} finding on side {side} (lobes {lobes})")
    sev = sorted({c.severity for c in cands})
    w = np.asarray(weights[: len(sev)], dtype=float)
    s = sev[int(rng.choice(len(sev), p=w / w.sum()))]
    chosen = [c for c in cands if c.severity == s]
    return chosen[int(rng.integers(len(chosen)))].key


def _study_findings(truth: pd.Series, atlas: ProjectionAtlas, p: dict, rng) -> dict:
    """Which bank entries and devices a truly-positive study shows."""
    sev_w = p["severity_weights"]
    findings: list[str] = []
    busy: set[str] = set()  # sides whose lung a finding already reshapes
    out = {"drain_side": None}
    if truth["Pneumothorax"]:
        side = "right" if rng.random() < p["pneumothorax_right"] else "left"
        findings.append(_pick(atlas, "pneumothorax", side, sev_w, rng))
        busy.add(side)
    if truth["Pleural Effusion"]:
        choice = str(rng.choice(list(p["effusion_sides"]), p=_normalised(p["effusion_sides"])))
        sides = ["right", "left"] if choice == "both" else [choice]
        # a pneumothorax and an effusion would reshape the same lung: keep them apart
        sides = [s for s in sides if s not in busy] or [
            s for s in ("right", "left") if s not in busy
        ]
        for s in sides:
            findings.append(_pick(atlas, "pleural_effusion", s, sev_w, rng))
        busy.update(sides)
    if truth["Cardiomegaly"]:
        findings.append(_pick(atlas, "cardiomegaly", None, sev_w, rng))
    if truth["Lung Opacity"]:
        kind = "consolidation" if truth["Consolidation"] else "lung_opacity"
        lobes = [
            lobe
            for lobe in LUNG_LOBES_RIGHT + LUNG_LOBES_LEFT
            if ("right" if lobe in LUNG_LOBES_RIGHT else "left") not in busy
            and any(e.spec.args.get("lobe") == lobe for e in atlas.entries_of(kind))
        ]
        if lobes:
            lobe = lobes[int(rng.integers(len(lobes)))]
            findings.append(_pick(atlas, kind, None, sev_w, rng, lobes=[lobe]))
    devices: list[str] = []
    if truth["Support Devices"]:
        d = p["devices"]
        for kind, prob in d["probability"].items():
            if kind == "chest_drain" and truth["Pneumothorax"]:
                prob = d["chest_drain_with_pneumothorax"]
            if rng.random() < prob:
                devices.append(kind)
        if not devices:
            kinds = list(d["probability"])
            devices.append(kinds[int(rng.choice(len(kinds), p=_normalised(d["probability"])))])
        if "chest_drain" in devices and truth["Pneumothorax"]:
            out["drain_side"] = next(
                k.split("/")[1] for k in findings if k.startswith("pneumothorax")
            )
    out["findings"] = tuple(findings)
    out["devices"] = tuple(devices)
    return out


def _uniform(rng, bounds) -> float:
    lo, hi = bounds
    return float(rng.uniform(lo, hi))


def _spec_for_image(row, study: dict, patient: dict, p: dict, rng) -> ImageSpec:
    """Positioning, exposure and annotations of one image."""
    proj = row["AP/PA"] if row["view"] == "frontal" else "LL"
    pos, exp, ann = p["positioning"], p["exposure"], p["annotations"]
    text_options = ann["text"][proj]
    text = tuple(text_options[int(rng.integers(len(text_options)))]) if text_options else ()
    lo, hi = exp["dose"][proj]
    return ImageSpec(
        view=row["view"],
        projection=proj,
        seed=int(rng.integers(2**31)),
        anatomy_seed=patient["anatomy_seed"],
        device_seed=study["device_seed"],
        yaw_deg=float(rng.normal(0.0, pos["yaw_sd_deg"][proj])),
        roll_deg=float(rng.normal(0.0, pos["roll_sd_deg"][proj])),
        scale_lr=patient["scale_lr"],
        scale_ap=patient["scale_ap"],
        scale_si=patient["scale_si"],
        field_margin=_uniform(rng, pos["field_margin"][row["view"]]),
        top_margin_mm=_uniform(rng, pos["top_margin_mm"]),
        shift_mm=float(rng.normal(0.0, pos["shift_sd_mm"])),
        elastic_mm=patient["elastic_mm"],
        bone_gain=_uniform(rng, exp["bone_gain"]),
        dose=float(np.exp(rng.uniform(np.log(lo), np.log(hi)))),
        window_lo=float(rng.normal(0.0, exp["window_sd"])),
        window_hi=float(rng.normal(0.0, exp["window_sd"])),
        gamma=_uniform(rng, exp["gamma"]),
        unsharp_sigma_px=_uniform(rng, exp["unsharp_sigma_px"]),
        unsharp_amount=_uniform(rng, exp["unsharp_amount"]),
        findings=study["findings"],
        devices=study["devices"],
        drain_side=study["drain_side"],
        text=text,
        marker=("R" if rng.random() < 0.5 else "L")
        if rng.random() < ann["marker_probability"]
        else "",
        shutter=_uniform(rng, ann["shutter_size"])
        if rng.random() < ann["shutter_probability"][proj]
        else 0.0,
    )


SPEC_FIELDS = [f.name for f in fields(ImageSpec)]
_TUPLE_FIELDS = ("findings", "devices", "text")


def spec_to_record(spec: ImageSpec) -> dict:
    rec = asdict(spec)
    for k in _TUPLE_FIELDS:
        rec[k] = "|".join(rec[k])
    rec["drain_side"] = rec["drain_side"] or ""
    return {f"spec_{k}": v for k, v in rec.items()}


def spec_from_record(rec) -> ImageSpec:
    """Inverse of ``spec_to_record`` (accepts a dict or a pandas row)."""
    kw = {}
    for name in SPEC_FIELDS:
        v = rec[f"spec_{name}"]
        if name in _TUPLE_FIELDS:
            v = tuple(x for x in str(v).split("|") if x)
        elif name == "drain_side":
            v = v or None
        elif isinstance(v, np.generic):
            v = v.item()
        kw[name] = v
    return ImageSpec(**kw)


def plan_cohort(atlas: ProjectionAtlas, params: dict, seed: int) -> pd.DataFrame:
    """One row per image: CheXpert metadata, report labels, truth and render spec.

    Args:
        atlas: the projection atlas (its finding bank and framing).
        params: the ``cohort`` parameter block (sizes, demographics, latent model,
            truth model, rendering distributions).
        seed: the cohort seed.

    Returns:
        A DataFrame with ``Path``, the CheXpert columns (train labels as the report labeler
        wrote them, valid/test as 0/1 truth), ``truth_<observation>`` columns, the
        ``spec_*`` columns of ``ImageSpec`` and per-image finding statistics.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for split in SPLITS:
        n = int(params["sizes"][f"{split}_images"])
        if n < 0:
            raise ValueError(f"sizes.{split}_images must be >= 0, got {n}")
        if n == 0:
            continue
        images = _studies(split, n, params, rng)
        study_keys = ["patient_id", "study_id"]
        studies = images.groupby(study_keys, sort=False).size().rename("n_images").reset_index()
        labels = _study_labels(studies, params, rng)
        truth = _truth(labels, params, rng)
        studies = pd.concat([studies, labels, truth.add_prefix("truth_")], axis=1)
        r = params["render"]
        anatomy = {}
        for pid in studies["patient_id"].unique():
            a = r["anatomy"]
            anatomy[pid] = {
                "anatomy_seed": int(rng.integers(2**31)),
                "scale_lr": _uniform(rng, a["scale_lr"]),
                "scale_ap": _uniform(rng, a["scale_ap"]),
                "scale_si": _uniform(rng, a["scale_si"]),
                "elastic_mm": _uniform(rng, a["elastic_mm"]),
            }
        study_render = []
        for _, st in studies.iterrows():
            t = pd.Series({o: st[f"truth_{o}"] for o in cx.OBSERVATIONS})
            f = _study_findings(t, atlas, r["findings"], rng)
            f["device_seed"] = int(rng.integers(2**31))
            study_render.append(f)
        merged = images.merge(studies, on=study_keys, how="left", validate="many_to_one")
        index = {k: i for i, k in enumerate(zip(studies.patient_id, studies.study_id, strict=True))}
        specs = []
        for _, row in merged.iterrows():
            st = study_render[index[(row.patient_id, row.study_id)]]
            specs.append(spec_to_record(_spec_for_image(row, st, anatomy[row.patient_id], r, rng)))
        merged = pd.concat([merged, pd.DataFrame(specs, index=merged.index)], axis=1)
        if split != "train":  # radiologist labels: 0/1, equal to the truth
            for o in cx.OBSERVATIONS:
                merged[o] = merged[f"truth_{o}"].astype(float)
        frames.append(merged)
    plan = pd.concat(frames, ignore_index=True)
    width = int(params["image"]["width"])
    plan["output_pixel_mm"] = [
        output_pixel_mm(atlas, spec_from_record(row), width) for _, row in plan.iterrows()
    ]
    return plan.drop(columns=["n_images"])
