"""The cohort plan as CheXpert files: train.csv, valid.csv, groundtruth.csv, and the truth.

The CSVs carry exactly the release's columns and value conventions (``chexpert.py``); the
truth sidecar carries what the labels hide (one row per image and observation), for measuring
how well a label policy recovers it. Training code never reads the truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxr_augment import chexpert as cx
from cxr_augment.render.atlas import FINDING_OBSERVATION, ProjectionAtlas
from cxr_augment.render.cohort import RENDERED, spec_from_record


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
    devices the area is not known before rendering (NaN).
    """
    obs_of_kind = FINDING_OBSERVATION
    records = []
    for _, row in plan.iterrows():
        spec = spec_from_record(row)
        yi = int(np.argmin([abs(y - spec.yaw_deg) for y in atlas.yaws_deg]))
        key = (spec.view, yi)
        px_scale = (atlas.geometry.pixel_mm / row["output_pixel_mm"]) ** 2
        s_h = spec.scale_lr if spec.view == "frontal" else spec.scale_ap
        by_obs: dict[str, list] = {}
        for name in spec.findings:
            e = atlas.entries[name]
            by_obs.setdefault(obs_of_kind[e.spec.kind], []).append(e)
            if e.spec.kind == "consolidation":  # a consolidation is an opacity
                by_obs.setdefault("Lung Opacity", []).append(e)
        for obs in cx.OBSERVATIONS:
            entries = by_obs.get(obs, [])
            rec = {
                "Path": row["Path"],
                "split": row["split"],
                "patient_id": row["patient_id"],
                "study_id": row["study_id"],
                "view": row["view"],
                "observation": obs,
                "truth": int(row[f"truth_{obs}"]),
                "csv_label": row[obs],
                "rendered": obs in RENDERED,
                "finding": "|".join(e.spec.key for e in entries),
                "side": "|".join(sorted({e.spec.side or "midline" for e in entries})),
                "severity": max((e.spec.severity for e in entries), default=0),
                "lesion_area_px": float(
                    sum(e.lesion_area_px[key] for e in entries) * px_scale * s_h * spec.scale_si
                ),
                "lesion_contrast": float(
                    np.mean([e.lesion_mean_delta[key] for e in entries]) if entries else 0.0
                ),
            }
            if obs == "Support Devices":
                rec["finding"] = "|".join(spec.devices)
                rec["lesion_area_px"] = np.nan if spec.devices else 0.0
            records.append(rec)
    return pd.DataFrame.from_records(records)
