"""The cohort plan as CheXpert files: train.csv, valid.csv, groundtruth.csv, and the truth.

The CSVs carry exactly the release's columns and value conventions (``chexpert.py``); the
truth sidecar carries what the labels hide (one row per image and observation), for measuring
how well a label policy recovers it. Training code never reads the truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxr_augment.preprocess import chexpert as cx
from cxr_augment.render.atlas import FINDING_OBSERVATION, ProjectionAtlas
from cxr_augment.render.cohort import RENDERED


def chexpert_csv(plan: pd.DataFrame, split: str) -> pd.DataFrame:
    """train.csv or valid.csv rows of ``split``, in the release's column order."""
    if split not in ("train", "valid"):
        raise ValueError(f"chexpert_csv: split must be train or valid, got {split!r}")
    rows = plan[plan["split"] == split]
    out = rows[list(cx.TRAIN_COLUMNS)].reset_index(drop=True).copy()
    out["Age"] = out["Age"].astype(int)
    for obs in cx.OBSERVATIONS:
        out[obs] = out[obs].astype(float)
    return out


def groundtruth_csv(plan: pd.DataFrame) -> pd.DataFrame:
    """groundtruth.csv: one row per test study, integer 0/1 labels."""
    rows = plan[plan["split"] == "test"]
    studies = rows.drop_duplicates(["patient_id", "study_id"])
    out = pd.DataFrame(
        {
            "Study": [
                cx.study_path("test", p, s)
                for p, s in zip(studies.patient_id, studies.study_id, strict=True)
            ]
        }
    )
    for obs in cx.OBSERVATIONS:
        out[obs] = studies[f"truth_{obs}"].astype(int).to_numpy()
    return out


def truth_table(plan: pd.DataFrame, atlas: ProjectionAtlas) -> pd.DataFrame:
    """One row per image and observation: the truth, the CSV's label and what was drawn.

    ``lesion_area_px`` is the projected lesion's area in output pixels and ``lesion_contrast``
    its mean added line integral (larger = more conspicuous), both from the atlas; for
    devices the area is not known before rendering (NaN). Built column-wise with categorical
    columns so that a CheXpert-size cohort (3 million rows) stays small.
    """
    n = len(plan)
    yaws = np.asarray(atlas.yaws_deg)
    yaw_idx = np.abs(plan["spec_yaw_deg"].to_numpy()[:, None] - yaws[None, :]).argmin(axis=1)
    frontal = plan["spec_view"].to_numpy() == "frontal"
    s_h = np.where(frontal, plan["spec_scale_lr"], plan["spec_scale_ap"])
    area_scale = (atlas.geometry.pixel_mm / plan["output_pixel_mm"].to_numpy()) ** 2
    area_scale = area_scale * s_h * plan["spec_scale_si"].to_numpy()
    # per observation: the finding keys drawn, their side, severity, area and contrast
    per_obs = {
        o: {
            "finding": [""] * n,
            "side": [""] * n,
            "severity": np.zeros(n, np.int8),
            "area": np.zeros(n),
            "contrast": np.zeros(n),
        }
        for o in cx.OBSERVATIONS
    }
    findings = plan["spec_findings"].to_numpy()
    views = plan["spec_view"].to_numpy()
    for i in range(n):
        if not findings[i]:
            continue
        key = (views[i], int(yaw_idx[i]))
        groups: dict[str, list] = {}
        for name in findings[i].split("|"):
            e = atlas.entries[name]
            groups.setdefault(FINDING_OBSERVATION[e.spec.kind], []).append(e)
            if e.spec.kind == "consolidation":  # a consolidation is an opacity
                groups.setdefault("Lung Opacity", []).append(e)
        for obs, entries in groups.items():
            d = per_obs[obs]
            d["finding"][i] = "|".join(e.spec.key for e in entries)
            d["side"][i] = "|".join(sorted({e.spec.side or "midline" for e in entries}))
            d["severity"][i] = max(e.spec.severity for e in entries)
            d["area"][i] = sum(e.lesion_area_px[key] for e in entries) * area_scale[i]
            d["contrast"][i] = float(np.mean([e.lesion_mean_delta[key] for e in entries]))
    devices = plan["spec_devices"].to_numpy()
    per_obs["Support Devices"]["finding"] = list(devices)
    per_obs["Support Devices"]["area"] = np.where(devices != "", np.nan, 0.0)
    parts = []
    for obs in cx.OBSERVATIONS:
        d = per_obs[obs]
        parts.append(
            pd.DataFrame(
                {
                    "Path": plan["Path"].to_numpy(),
                    "split": plan["split"].to_numpy(),
                    "patient_id": plan["patient_id"].to_numpy(np.int32),
                    "study_id": plan["study_id"].to_numpy(np.int16),
                    "view": views,
                    "observation": obs,
                    "truth": plan[f"truth_{obs}"].to_numpy(np.int8),
                    "csv_label": plan[obs].to_numpy(np.float32),
                    "rendered": obs in RENDERED,
                    "finding": d["finding"],
                    "side": d["side"],
                    "severity": d["severity"],
                    "lesion_area_px": d["area"].astype(np.float32),
                    "lesion_contrast": d["contrast"].astype(np.float32),
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    for col in ("Path", "split", "view", "observation", "finding", "side"):
        out[col] = out[col].astype("category")
    order = np.argsort(np.tile(np.arange(n), len(cx.OBSERVATIONS)), kind="stable")
    return out.iloc[order].reset_index(drop=True)
