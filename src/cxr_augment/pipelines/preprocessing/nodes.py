"""Nodes of ``preprocessing``: CheXpert in, manifests and a tensor store out."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import partial

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cxr_augment import __version__  # noqa: E402
from cxr_augment.preprocess import chexpert as cx  # noqa: E402
from cxr_augment.preprocess import imaging, labels, splits  # noqa: E402
from cxr_augment.preprocess.tensor_store import StoreWrite, TensorStore  # noqa: E402

log = logging.getLogger(__name__)

PATH_PATTERN = cx.PATH_PATTERN
INGESTION_DEFAULTS = {
    "chexpert_root": None,
    "show_first": 20,
    "age_range": list(cx.AGE_RANGE),
    "quarantine_table": "the catalog's `quarantine` dataset",
    "unlisted_table": "the catalog's `unlisted_images` dataset",
}
QUARANTINE_COLUMNS = ["key", "source", "patient_id", "file", "row", "rule", "reason"]


def _slug(observation: str) -> str:
    return observation.lower().replace(" ", "_")


def _ingestion(params: dict | None) -> dict:
    """``preprocessing.ingestion`` over its defaults (``params`` is ``preprocessing``)."""
    return {**INGESTION_DEFAULTS, **((params or {}).get("ingestion") or {})}


class _Where:
    """Full paths of the files under the dataset root, and the setting that names the root."""

    def __init__(self, root: str | None) -> None:
        self.root = os.path.abspath(root) if root else "<chexpert_root>"
        self.files = {name: f"{self.root}/{rel}" for name, rel in cx.CSV_FILES.items()}
        self.note = f"The dataset root is {self.root} ({cx.ROOT_SETTING})."


def _flag(frame: pd.DataFrame, mask, rule, reason) -> None:
    """Add ``rule`` / ``reason`` (a string, or a Series aligned with ``frame``) to the
    quarantine columns of the rows in ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    for col, text in (("quarantine_rule", rule), ("quarantine_reason", reason)):
        add = np.asarray(text[mask], dtype=object) if isinstance(text, pd.Series) else text
        cur = frame.loc[mask, col].to_numpy(dtype=object)
        frame.loc[mask, col] = np.where(cur == "", add, cur + "; " + add)


def _image_table(
    table: pd.DataFrame,
    file: str,
    source: str,
    listing: set[str],
    findings: cx.Findings,
    where: _Where,
    age_range: tuple[float, float],
) -> pd.DataFrame | None:
    """train.csv / valid.csv rows as manifest rows (None when the file breaks a table rule).

    Table rules (header, rows, paths, labels) go to ``findings`` for every row; row rules
    (a missing image, untrustworthy metadata) fill ``quarantine_rule`` / ``quarantine_reason``.
    """
    before = len(findings)
    table = cx.normalise_header(table).reset_index(drop=True)
    if not cx.check_header(table.columns, cx.TRAIN_COLUMNS, file, findings):
        return None
    if len(table) == 0:
        findings.add(cx.Violation(file, None, "", "no data rows", "the file has a header only"))
        return None
    raw = cx.parse_labels(table, file, findings=findings)
    if "Path" not in table.columns:
        return None
    paths = table["Path"].fillna("").astype(str).str.strip()
    bad = cx.check_paths(paths, file, findings=findings)
    parts = cx.parse_paths(paths)
    unparsed = parts["source"].isna().to_numpy() & ~bad
    findings.add_rows(file, unparsed, "Path", "path pattern", paths, f"expected {cx.PATH_EXPECTED}")
    wrong = (parts["source"].str.lower() != source).to_numpy() & ~unparsed & ~bad
    findings.add_rows(file, wrong, "Path", "path split", paths, f"expected it under {source}/")
    if len(findings) > before:
        return None
    out = pd.DataFrame(
        {
            "key": paths.to_numpy(),
            "source": parts["source"].str.lower().to_numpy(),
            "patient_id": parts["patient"].astype(int).to_numpy(),
            "study_id": parts["study"].astype(int).to_numpy(),
            "view_index": parts["view_index"].astype(int).to_numpy(),
            "view": parts["view"].str.lower().to_numpy(),
            "projection": table["AP/PA"].fillna("").astype(str).str.strip().to_numpy(),
            "sex": table["Sex"].fillna("").astype(str).str.strip().to_numpy(),
            "age": pd.to_numeric(table["Age"].astype(str).str.strip(), errors="coerce").to_numpy(),
        }
    )
    out = pd.concat([out, raw], axis=1)
    out["listed_in"] = file
    out["csv_row"] = np.arange(len(out)) + 2
    missing = ~np.fromiter((k in listing for k in paths), dtype=bool, count=len(paths))
    if missing.all():
        folder = f"{where.root}/{'/'.join(paths.iloc[0].split('/')[:2])}/"
        findings.add(
            cx.Violation(
                file, None, "", "no listed image exists",
                f"none of its {len(paths)} images is under {folder}",
                "is the dataset root right?",
            )
        )  # fmt: skip
        return None
    out["quarantine_rule"] = ""
    out["quarantine_reason"] = ""
    _flag(out, missing, "missing image file", "missing image file")
    meta = cx.metadata_reasons(table, out["view"], age_range)
    _flag(out, (meta["rule"] != "").to_numpy(), meta["rule"], meta["reason"])
    return out


def _groundtruth_table(
    table: pd.DataFrame,
    file: str,
    listing: pd.DataFrame,
    findings: cx.Findings,
    where: _Where,
) -> pd.DataFrame | None:
    """groundtruth.csv (one row per study) expanded to the images of each study's folder.

    A study whose folder holds no image is quarantined (key: the folder, with a slash), an
    image in it whose name is not ``viewN_<frontal|lateral>.jpg`` too.
    """
    before = len(findings)
    table = cx.normalise_header(table).reset_index(drop=True)
    if not cx.check_header(table.columns, cx.GROUNDTRUTH_COLUMNS, file, findings):
        return None
    if len(table) == 0:
        findings.add(cx.Violation(file, None, "", "no data rows", "the file has a header only"))
        return None
    raw = cx.parse_labels(table, file, allowed=("0", "1", "0.0", "1.0"), findings=findings)
    if "Study" not in table.columns:
        return None
    studies = table["Study"].fillna("").astype(str).str.strip().str.rstrip("/")
    bad = cx.check_paths(studies, file, findings=findings, column="Study")
    sparts = cx.parse_paths(studies, cx.STUDY_PATTERN)
    unparsed = sparts["source"].isna().to_numpy() & ~bad
    findings.add_rows(
        file, unparsed, "Study", "study pattern", studies, f"expected {cx.STUDY_EXPECTED}"
    )
    if len(findings) > before:
        return None
    wanted = pd.DataFrame({"folder": studies.to_numpy(), "row": np.arange(len(studies))})
    rows = wanted.merge(listing, on="folder", how="left", sort=False)
    empty = rows["key"].isna().to_numpy()
    if empty.all():
        findings.add(
            cx.Violation(
                file, None, "", "no listed image exists",
                f"none of its {len(studies)} study folders holds an image under "
                f"{where.root}/{cx.FULL_RELEASE}/test/",
                "is the dataset root right?",
            )
        )  # fmt: skip
        return None
    rows["key"] = rows["key"].where(~empty, rows["folder"] + "/")
    info = cx.parse_paths(rows["key"].astype(str))
    badname = info["source"].isna().to_numpy() & ~empty
    r = rows["row"].to_numpy()
    out = pd.DataFrame(
        {
            "key": rows["key"].to_numpy(),
            "source": "test",
            "patient_id": sparts["patient"].astype(int).to_numpy()[r],
            "study_id": sparts["study"].astype(int).to_numpy()[r],
            "view_index": info["view_index"].fillna(-1).astype(int).to_numpy(),
            "view": info["view"].fillna("").str.lower().to_numpy(),
            "projection": "",
            "sex": "",
            "age": np.nan,
        }
    )
    out = pd.concat([out, raw.iloc[r].reset_index(drop=True)], axis=1)
    out["listed_in"] = file
    out["csv_row"] = r + 2
    out["quarantine_rule"] = ""
    out["quarantine_reason"] = ""
    _flag(out, empty, "missing image file", "no image in the study folder")
    _flag(out, badname, "file name", "file name is not viewN_<frontal|lateral>.jpg")
    return out


def ingest_chexpert(
    train_csv: pd.DataFrame,
    valid_csv: pd.DataFrame,
    groundtruth_csv: pd.DataFrame,
    image_files: dict,
    params: dict | None = None,
) -> pd.DataFrame:
    """Validate the three tables against the release's rules and list every image.

    Table rules are fatal, every violation of all three files reported in one error:
    the header (delimiter, missing, extra or reordered columns), no data rows, a label
    outside {1, 0, -1, empty} (groundtruth.csv: {0, 1}), an empty, absolute or escaping path,
    one outside the release, a duplicate, one that does not parse into patient / study / view
    or sits in the wrong split's folder, and a file none of whose images exists (a wrong
    dataset root). Row rules quarantine the row's image and the run goes on: a missing image,
    and the metadata rules of ``chexpert.metadata_reasons`` (Sex, Age, Frontal/Lateral,
    AP/PA).

    Args:
        train_csv, valid_csv, groundtruth_csv: the tables, loaded as text.
        image_files: the dataset's image files (relative path -> reader); listed once.
        params: ``preprocessing`` (its ``ingestion`` block: ``chexpert_root`` for the paths
            in messages, ``show_first``, ``age_range``).

    Returns:
        One row per listed image: key (the ``Path``), source split, patient, study, view,
        projection, sex, age, the 14 raw labels (1, 0, -1, NaN), where it is listed
        (``listed_in``, ``csv_row``: the file's line) and why it is quarantined
        (``quarantine_rule``, ``quarantine_reason``; empty when usable).

    Raises:
        IngestionError: the count and the first ``show_first`` violations (file, row,
            column, rule, value), with the files' full paths and the root's setting.
    """
    p = _ingestion(params)
    where = _Where(p["chexpert_root"])
    findings = cx.Findings(p["show_first"])
    keys = pd.Series(list(image_files), dtype=object)  # the image folder, listed once
    listing = pd.DataFrame({"key": keys, "folder": keys.str.rsplit("/", n=1).str[0]})
    present = set(keys)
    age_range = tuple(float(v) for v in p["age_range"])
    parts = [
        _image_table(train_csv, "train.csv", "train", present, findings, where, age_range),
        _image_table(valid_csv, "valid.csv", "valid", present, findings, where, age_range),
        _groundtruth_table(groundtruth_csv, "groundtruth.csv", listing, findings, where),
    ]
    findings.raise_if_any(where.files, where.note)
    manifest = pd.concat(parts, ignore_index=True)
    manifest["origin"] = "real"
    dup = manifest["key"].duplicated()
    if dup.any():  # each file's paths are unique and in its own split's folder
        raise AssertionError(f"a path listed twice across files: {manifest.key[dup].iloc[0]}")
    return manifest


def find_unlisted_images(
    manifest: pd.DataFrame, image_files: dict, params: dict | None = None
) -> pd.DataFrame:
    """Image files in the release's image folders that no CSV lists.

    The image folder is listed once (the mapping's walk, which ingestion already made). Only
    the folders the CSVs describe count (``CheXpert-v1.0-small/train``, ``.../valid``,
    ``CheXpert-v1.0/test``): a full-resolution ``CheXpert-v1.0/train`` beside the small release
    is not read and not reported.

    Args:
        manifest: the ingested manifest (every listed image, quarantined or not).
        image_files: relative path -> reader.
        params: ``preprocessing`` (``ingestion.show_first``, ``ingestion.unlisted_table``).

    Returns:
        One row per unlisted image: key, ``csv`` (the file that should list it), reason.
    """
    p = _ingestion(params)
    keys = pd.Series(list(image_files), dtype=object)
    top = keys.str.split("/", n=2).str[:2].str.join("/")
    csv = top.map(cx.IMAGE_FOLDERS)
    unlisted = keys[csv.notna() & ~keys.isin(set(manifest["key"]))]
    csv = csv[unlisted.index]
    reason = "listed in no row of " + csv
    listed_studies = set(
        manifest.loc[manifest["listed_in"] == "groundtruth.csv", "key"].str.rsplit("/", n=1).str[0]
    )
    test = csv == "groundtruth.csv"
    study = unlisted.str.split("/", n=4).str[:4].str.join("/")
    reason[test] = np.where(
        study[test].isin(listed_studies),
        "not directly inside its study folder",
        "test study absent from groundtruth.csv",
    )
    out = pd.DataFrame(
        {"key": unlisted.to_numpy(), "csv": csv.to_numpy(), "reason": reason.to_numpy()}
    )
    if len(out):
        n = int(p["show_first"])
        log.warning(
            "%d image file(s) that no CSV lists (%s); dataset `unlisted_images` (%s); the first "
            "%d:\n  %s",
            len(out),
            _counts(out["reason"]),
            p["unlisted_table"],
            min(n, len(out)),
            "\n  ".join(f"{k}: {r}" for k, r in zip(out.key[:n], out.reason[:n], strict=True)),
        )
    return out


def _counts(values: pd.Series) -> str:
    return ", ".join(f"{k}: {v}" for k, v in values.value_counts().items())


def quarantine_images(
    manifest: pd.DataFrame, store: TensorStore, params: dict | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold back every image that cannot be used: those ingestion flagged (missing image,
    untrustworthy metadata) and those the tensor store could not decode.

    Everything after this (Tables 6 and 7, the split, the split table) counts the usable
    images only. The run log says how many were quarantined and where the table is.

    Args:
        manifest: the ingested manifest.
        store: the written tensor store (of the images ingestion did not flag).
        params: ``preprocessing`` (``ingestion.show_first``, ``ingestion.quarantine_table``).

    Returns:
        The usable images' manifest, and the quarantine table (key, source, patient, the
        CSV file and row that list it, the rule and the reason), in file order.
    """
    p = _ingestion(params)
    flagged = (manifest["quarantine_reason"] != "").to_numpy()
    undecodable = manifest["key"].isin(store.quarantine["key"]).to_numpy() & ~flagged
    reasons = manifest["quarantine_reason"].copy()
    rules = manifest["quarantine_rule"].copy()
    by_key = store.quarantine.set_index("key")["reason"].astype(str)
    reasons[undecodable] = manifest.loc[undecodable, "key"].map(by_key).to_numpy()
    rules[undecodable] = "unreadable image"
    held = flagged | undecodable
    quarantine = pd.DataFrame(
        {
            "key": manifest.loc[held, "key"],
            "source": manifest.loc[held, "source"],
            "patient_id": manifest.loc[held, "patient_id"],
            "file": manifest.loc[held, "listed_in"],
            "row": manifest.loc[held, "csv_row"],
            "rule": rules[held],
            "reason": reasons[held],
        },
        columns=QUARANTINE_COLUMNS,
    ).reset_index(drop=True)
    usable = manifest[~held].drop(
        columns=["listed_in", "csv_row", "quarantine_rule", "quarantine_reason"]
    )
    n, shown = len(quarantine), int(p["show_first"])
    if n:
        log.warning(
            "%d of %d listed images quarantined (%s); dataset `quarantine` (%s); paths are "
            "relative to %s; the first %d:\n  %s",
            n,
            len(manifest),
            _counts(quarantine["rule"]),
            p["quarantine_table"],
            _Where(p["chexpert_root"]).root,
            min(n, shown),
            "\n  ".join(
                f"{r.file}, row {r.row}: {r.key}: {r.reason}"
                for r in quarantine.head(shown).itertuples()
            ),
        )
    else:
        log.info(
            "0 of %d listed images quarantined; dataset `quarantine` (%s) is empty",
            len(manifest),
            p["quarantine_table"],
        )
    if not (usable["source"] == "train").any():
        raise ValueError(
            f"no usable training image: all {int((manifest.source == 'train').sum())} images "
            f"train.csv lists are quarantined; see dataset `quarantine` ({p['quarantine_table']})"
        )
    return usable.reset_index(drop=True), quarantine


def apply_label_policies(
    manifest: pd.DataFrame, params: dict
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Targets under the chosen policy; thesis Tables 6 and 7 for the target observations.

    Args:
        manifest: the usable images (after the quarantine): Tables 6 and 7 count only them.
        params: ``preprocessing.labels``: ``targets`` (observations), ``policy``
            (``uncertain``, ``not_mentioned``).

    Returns:
        The manifest with ``target_<observation>`` columns (and ``relabel_<observation>`` for
        U-SelfTrained's second stage), the distribution table and its Markdown.
    """
    policy = labels.parse_policy(params["policy"])
    out = manifest.copy()
    tables = []
    train = manifest["source"] == "train"
    for obs in params["targets"]:
        if obs not in cx.OBSERVATIONS:
            raise ValueError(f"preprocessing.labels.targets: unknown observation {obs!r}")
        out[f"target_{_slug(obs)}"] = labels.impute(manifest[obs], policy)
        if policy.uncertain == "self_trained":
            flag = np.zeros(len(out), bool)
            flag[labels.relabel_rows(manifest[obs])] = True
            out[f"relabel_{_slug(obs)}"] = flag & train.to_numpy()
        tables.append(labels.distribution_table(manifest.loc[train, obs], obs))
    out.attrs["label_policy"] = policy.name
    table = pd.concat(tables, ignore_index=True)
    md = [
        "# Label distribution of the training images (thesis Tables 6 and 7)\n",
        f"Chosen policy for the targets: **{policy.name}**.\n",
    ]
    for obs, part in table.groupby("observation", sort=False):
        md.append(
            f"\n## {obs}\n\n" + part.drop(columns="observation").to_markdown(index=False) + "\n"
        )
    return out, table, "".join(md)


def policy_truth_agreement(
    manifest: pd.DataFrame, truth: pd.DataFrame | None, params: dict
) -> pd.DataFrame:
    """How well each label policy recovers the truth on the training images (demo data).

    Args:
        manifest: the usable images (after the quarantine).
        truth: the demo's ``truth.parquet`` (None for a real download: empty result).
        params: ``preprocessing.labels`` (``targets``, ``compare``: policy slugs).
    """
    columns = [
        "observation",
        "policy",
        "images",
        "kept",
        "kept_share",
        "accuracy",
        "sensitivity",
        "implied_positive_rate",
        "true_positive_rate",
    ]
    if truth is None or len(truth) == 0:
        return pd.DataFrame(columns=columns)
    train = manifest[manifest["source"] == "train"]
    rows = []
    for obs in params["targets"]:
        t = truth[truth["observation"] == obs].set_index("Path")["truth"]
        missing = ~train["key"].isin(t.index)
        if missing.any():
            raise ValueError(
                f"truth table lacks {int(missing.sum())} images, e.g. {train.key[missing].iloc[0]}"
            )
        tv = t.loc[train["key"]].to_numpy()
        for slug in params["compare"]:
            rows.append(
                {
                    "observation": obs,
                    **labels.agreement_with_truth(train[obs], tv, labels.parse_policy(slug)),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def split_by_patient(manifest: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """valid -> validation, test -> test, train -> train / internal_test by patient.

    Args:
        manifest: the labelled usable images (after the quarantine): the split and the split
            table count only them, and a patient whose every image is quarantined is in none.
        params: ``preprocessing.split``: ``test_fraction``, ``seed``, ``stratify_by``
            (a target observation).

    Returns:
        The manifest with a ``split`` column, and the split table (one row per patient).
    """
    out = manifest.copy()
    out["split"] = out["source"].map(splits.SPLIT_OF_SOURCE)
    train = out["source"] == "train"
    strat = f"target_{_slug(params['stratify_by'])}"
    if strat not in out:
        raise ValueError(f"split.stratify_by {params['stratify_by']!r} is not a target column")
    out.loc[train, "split"] = splits.patient_split(
        out.loc[train, "patient_id"],
        out.loc[train, strat] == 1,
        params["test_fraction"],
        params["seed"],
    )
    table = (
        out.assign(positive=(out[strat] == 1).astype(int))
        .groupby(["patient_id", "split"], sort=True)
        .agg(images=("key", "size"), positives=("positive", "sum"))
        .reset_index()
    )
    return out, table


def _fingerprint(keys, image_files, params: dict) -> str:
    """Identity of the inputs: parameters, code version, every file's key, size and mtime."""
    h = hashlib.sha256()
    h.update(json.dumps({"params": params, "version": __version__}, sort_keys=True).encode())
    h.update("\0".join(keys).encode())
    h.update(np.asarray([image_files[k].stat() for k in keys], dtype=np.int64).tobytes())
    return h.hexdigest()


def _produce(image_files, keys, height: int, width: int, sixteen_bit: str, i: int) -> np.ndarray:
    data = image_files[keys[i]].read_bytes()
    image = imaging.decode_grey(data, sixteen_bit, at_least=(height, width))
    return imaging.resize(image, height, width)


def build_tensor_store(manifest: pd.DataFrame, image_files: dict, params: dict) -> StoreWrite:
    """Every usable image decoded (strictly), grey, resized: a lazy job the store dataset
    streams. Images ingestion quarantined (``quarantine_reason`` set) are not read; those
    that fail to decode are quarantined by the store with the reason.

    Args:
        manifest: the ingested manifest.
        image_files: relative path -> reader (the catalog's image folder).
        params: ``preprocessing.images``: ``size`` [H, W], ``sixteen_bit`` rule.
    """
    if "quarantine_reason" in manifest.columns:
        manifest = manifest[manifest["quarantine_reason"] == ""]
    h, w = (int(v) for v in params["size"])
    keys = manifest["key"].tolist()
    produce = partial(_produce, image_files, keys, h, w, params["sixteen_bit"])
    return StoreWrite(keys, produce, (h, w), _fingerprint(keys, image_files, params))


def finalize_manifest(
    manifest: pd.DataFrame,
    store: TensorStore,
    quarantine: pd.DataFrame,
    unlisted: pd.DataFrame,
    params: dict,
) -> tuple[pd.DataFrame, dict]:
    """Keep the stored images of the chosen views; count what was held back and why.

    Args:
        manifest: the split manifest (usable images only).
        store: the written tensor store.
        quarantine: the quarantine table.
        unlisted: the image files no CSV lists.
        params: ``preprocessing``: ``view`` (frontal, lateral or combined), ``ingestion``.

    Returns:
        The model-input manifest (with ``store_row``) and the counts.
    """
    view = params["view"]
    if view not in ("frontal", "lateral", "combined"):
        raise ValueError(f"preprocessing.view must be frontal, lateral or combined, got {view!r}")
    p = _ingestion(params)
    n = int(p["show_first"])
    if manifest["key"].isin(quarantine["key"]).any():
        raise AssertionError("a quarantined image is in the manifest")
    stored = manifest.copy()
    stored["store_row"] = store.rows_of(stored["key"].to_numpy())
    chosen = stored if view == "combined" else stored[stored["view"] == view]
    report = {
        "images_listed": int(len(stored) + len(quarantine)),
        "images_stored": int(len(stored)),
        "images_quarantined": int(len(quarantine)),
        "quarantine_reasons": quarantine["reason"].value_counts().to_dict(),
        "quarantine_rules": quarantine["rule"].value_counts().to_dict(),
        "quarantine_first": [
            f"{r.file}, row {r.row}: {r.key}: {r.reason}" for r in quarantine.head(n).itertuples()
        ],
        "quarantine_table": p["quarantine_table"],
        "images_unlisted": int(len(unlisted)),
        "unlisted_reasons": unlisted["reason"].value_counts().to_dict(),
        "unlisted_first": [
            f"{k}: {r}" for k, r in zip(unlisted.key[:n], unlisted.reason[:n], strict=True)
        ],
        "unlisted_table": p["unlisted_table"],
        "view": view,
        "images_after_view_filter": int(len(chosen)),
        "images_by_split": chosen["split"].value_counts().to_dict(),
        "store_shape": list(store.shape),
        "store_fingerprint": store.fingerprint,
    }
    return chosen.reset_index(drop=True), report


def mask_figure(store: TensorStore, manifest: pd.DataFrame, params: dict) -> plt.Figure:
    """Thesis Figure 18: one frontal image and the same image under each mask."""
    frontal = manifest[(manifest["view"] == "frontal") & (manifest["split"] == "train")]
    if frontal.empty:
        raise ValueError("no frontal training image to show the masks on")
    image = store[int(frontal["store_row"].iloc[0])]
    h, w = image.shape
    names = [m for m in imaging.MASKS]
    fig, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names), 3.0))
    for ax, (letter, name) in zip(axes, zip("abcde", names, strict=True), strict=True):
        hide = imaging.mask_region(name, h, w, params)
        ax.imshow(imaging.apply_mask(image, hide), cmap="gray", vmin=0, vmax=255)
        ax.set_title(
            f"({letter}) {name.replace('_', ' ') if name != 'none' else 'original'}", fontsize=8
        )
        ax.axis("off")
    fig.suptitle(
        "Masks (thesis Figure 18): square, separate and joint hide the lungs; "
        "inverted joint hides all but the lungs",
        fontsize=7,
    )
    fig.tight_layout()
    return fig
