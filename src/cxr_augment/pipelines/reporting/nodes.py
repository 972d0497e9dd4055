"""Nodes of ``reporting``."""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from cxr_augment.report import html
from cxr_augment.report.study_report import assets, sections

# the parameter blocks the report's provenance shows in full (all are hashed)
SHOWN_PARAMETERS = (
    "study.defaults",
    "study.compare",
    "study.pca",
    "study.headline",
    "augmentation.settings",
    "generation.schedule",
    "generation.train",
    "generation.models",
    "generation.generators",
    "generation.headline",
    "preprocessing",
)


def argument(asset: str) -> str:
    """The node's keyword for ``asset`` (dots are not allowed in Python names)."""
    return "in__" + asset.replace(".", "__")


def _block(parameters: dict, dotted: str):
    node = parameters
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def data_note(manifest: pd.DataFrame | None, params: dict) -> str:
    """What the data can and cannot show, with its size (``{size}``); ``{seeds}`` is left
    for ``study_report.sections``, which knows the table the answer was read from."""
    if manifest is None:
        size = "its size unknown: the manifest was not made"
    else:
        size = (
            f"{len(manifest):,} images, {(manifest['split'] == 'train').sum():,} of them for "
            f"training, of {manifest['patient_id'].nunique():,} patients"
        )
    return params.get("data_note", "").replace("{size}", size).strip()


def assemble_report(params: dict, parameters: dict, provenance: dict, **sources) -> str:
    """report.html: the answer first, then Tables 1, 2, 4-15 and Figures 18-23 beside the
    thesis's numbers, each naming the dataset (Dagster asset) it comes from; a result not
    made shows as "not run" with its command; then the run's provenance.

    Raises:
        ValueError: the rendered page fails its structural checks (a broken image, a number
            not linked to its asset, a dangling link).
    """
    loaded = {asset: sources[argument(asset)] for asset in assets(params)}
    # Tables 13 and 14: their generators' labels and the thesis's numbers
    params = {**params, "generation_tables": _block(parameters, "generation.tables") or {}}
    # each study group's note, by the asset of its table (what the group's Markdown says first)
    groups = _block(parameters, "study.groups") or {}
    params["group_notes"] = {
        f"report.{name}.table": group["note"]
        for name, group in groups.items()
        if isinstance(group, dict) and group.get("note")
    }
    parts, used = sections(params, loaded, data_note(loaded.get("manifest"), params))
    blob = json.dumps(parameters, sort_keys=True, default=str)
    prov = {
        **provenance,
        "answer read from": f"report.{used}.table" if used else "not run",
        "parameters_sha256": hashlib.sha256(blob.encode()).hexdigest(),
        "parameters": {
            name: json.dumps(value, sort_keys=True, default=str)
            for name in SHOWN_PARAMETERS
            if (value := _block(parameters, name)) is not None
        },
        "sources": {
            asset: ("made" if loaded[asset] is not None else "not run") for asset in loaded
        },
    }
    page = html.render(params["title"], parts, prov)
    problems = html.validate(page)
    if problems:
        raise ValueError("report.html failed its checks: " + "; ".join(problems[:10]))
    return page
