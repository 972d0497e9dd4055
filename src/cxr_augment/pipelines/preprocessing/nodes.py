"""Nodes of ``preprocessing``: CheXpert in, manifests and a tensor store out."""

from __future__ import annotations

import hashlib
import json
import re
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

PATH_PATTERN = re.compile(
    r"^(?P<release>CheXpert-v1\.0(?:-small)?)/(?P<source>train|valid|test)/patient(?P<patient>\d+)"
    r"/study(?P<study>\d+)/view(?P<view_index>\d+)_(?P<view>frontal|lateral)\.(?:jpg|jpeg|png)$",
    re.IGNORECASE,
)


def _slug(observation: str) -> str:
    return observation.lower().replace(" ", "_")


def _parse_paths(paths: pd.Series, file: str) -> pd.DataFrame:
    """Split, patient, study and view from every path (vectorised); bad patterns name the row."""
    parts = paths.str.extract(PATH_PATTERN)
    bad = parts["source"].isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise cx.ChexpertFormatError(
            file,
            i + 2,
            "path pattern",
            f"{paths.iloc[i]} (expected <release>/<split>/patientNNNNN/studyN/viewN_<frontal|lateral>.jpg)",
        )
    return pd.DataFrame(
        {
            "source": parts["source"].str.lower().to_numpy(),
            "patient_id": parts["patient"].astype(int).to_numpy(),
            "study_id": parts["study"].astype(int).to_numpy(),
            "view_index": parts["view_index"].astype(int).to_numpy(),
            "view": parts["view"].str.lower().to_numpy(),
        },
        index=paths.index,
    )


def _image_table(table: pd.DataFrame, file: str, image_files, source: str) -> pd.DataFrame:
    """train.csv / valid.csv rows as manifest rows, validated (see ``chexpert.py``)."""
    cx.check_columns(table.columns, cx.TRAIN_COLUMNS, file)
    paths = table["Path"].astype(str).str.strip()
    cx.check_paths(paths, file)
    raw = cx.parse_labels(table, file)
    out = _parse_paths(paths, file)
    wrong = out["source"] != source
    if wrong.any():
        i = int(np.flatnonzero(wrong.to_numpy())[0])
        raise cx.ChexpertFormatError(
            file, i + 2, "path split", f"{paths.iloc[i]} is not in {source}/"
        )
    path_list = paths.tolist()
    if hasattr(image_files, "missing"):
        absent = image_files.missing(path_list)
    else:
        absent = [i for i, p in enumerate(path_list) if p not in image_files]
    if absent:
        i = absent[0]
        raise cx.ChexpertFormatError(file, i + 2, "missing image file", path_list[i])
    fl = table["Frontal/Lateral"].astype(str).str.strip()
    bad = ~fl.isin([cx.FRONTAL, cx.LATERAL])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise cx.ChexpertFormatError(file, i + 2, "Frontal/Lateral value", repr(fl.iloc[i]))
    out.insert(0, "key", paths.to_numpy())
    out["projection"] = table["AP/PA"].fillna("").astype(str).str.strip().to_numpy()
    out["sex"] = table["Sex"].astype(str).str.strip().to_numpy()
    out["age"] = pd.to_numeric(table["Age"], errors="coerce").to_numpy()
    return pd.concat([out, raw], axis=1)


def _files_in(image_files, folder: str) -> list[str]:
    """Image keys directly inside ``folder``: a listing when the mapping offers one."""
    if hasattr(image_files, "files_in"):
        return image_files.files_in(folder)
    return sorted(k for k in image_files if k.rsplit("/", 1)[0] == folder)


def _groundtruth_table(table: pd.DataFrame, file: str, image_files: dict) -> pd.DataFrame:
    """groundtruth.csv (one row per study) expanded to the images of each study's folder."""
    cx.check_columns(table.columns, cx.GROUNDTRUTH_COLUMNS, file)
    raw = cx.parse_labels(table, file, allowed=("0", "1", "0.0", "1.0"))
    studies = table["Study"].astype(str).str.strip().str.rstrip("/")
    cx.check_paths([s + "/x" for s in studies], file)  # same rules for the folder
    rows = []
    for i, study in enumerate(studies):
        keys = _files_in(image_files, study)
        if not keys:
            raise cx.ChexpertFormatError(file, i + 2, "missing image file", f"no image in {study}/")
        rows.extend({"key": key, "row": i} for key in keys)
    out = pd.DataFrame(rows)
    info = _parse_paths(out["key"], file)
    labels_of_rows = raw.iloc[out["row"].to_numpy()].reset_index(drop=True)
    meta = pd.DataFrame({"projection": "", "sex": "", "age": np.nan}, index=out.index)
    return pd.concat([out[["key"]], info, meta, labels_of_rows], axis=1)


def ingest_chexpert(
    train_csv: pd.DataFrame,
    valid_csv: pd.DataFrame,
    groundtruth_csv: pd.DataFrame,
    image_files: dict,
) -> pd.DataFrame:
    """Validate the three tables against the release's rules and list every image.

    Args:
        train_csv, valid_csv, groundtruth_csv: the tables, loaded as text.
        image_files: the dataset's image files (relative path -> reader).

    Returns:
        One row per image: key (the ``Path``), source split, patient, study, view, projection,
        sex, age and the 14 raw labels (1, 0, -1, NaN).

    Raises:
        ChexpertFormatError: naming the file, the row and the rule broken.
    """
    parts = [
        _image_table(train_csv, "train.csv", image_files, "train"),
        _image_table(valid_csv, "valid.csv", image_files, "valid"),
        _groundtruth_table(groundtruth_csv, "groundtruth.csv", image_files),
    ]
    manifest = pd.concat(parts, ignore_index=True)
    manifest["origin"] = "real"
    dup = manifest["key"].duplicated()
    if dup.any():
        raise cx.ChexpertFormatError(
            "groundtruth.csv", None, "duplicate path", manifest.loc[dup, "key"].iloc[0]
        )
    return manifest


def apply_label_policies(
    manifest: pd.DataFrame, params: dict
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Targets under the chosen policy; thesis Tables 6 and 7 for the target observations.

    Args:
        manifest: the ingested manifest.
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
        manifest: the ingested manifest.
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
    """Every image decoded (strictly), grey, resized: a lazy job the store dataset streams.

    Args:
        manifest: the split manifest.
        image_files: relative path -> reader (the catalog's image folder).
        params: ``preprocessing.images``: ``size`` [H, W], ``sixteen_bit`` rule.
    """
    h, w = (int(v) for v in params["size"])
    keys = manifest["key"].tolist()
    produce = partial(_produce, image_files, keys, h, w, params["sixteen_bit"])
    return StoreWrite(keys, produce, (h, w), _fingerprint(keys, image_files, params))


def finalize_manifest(
    manifest: pd.DataFrame, store: TensorStore, params: dict
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Keep the stored images of the chosen views; report what was dropped and why.

    Args:
        manifest: the split manifest.
        store: the written tensor store.
        params: ``preprocessing``: ``view`` (frontal, lateral or combined), ``seed``.

    Returns:
        The model-input manifest (with ``store_row``), the quarantine table and the counts.
    """
    view = params["view"]
    if view not in ("frontal", "lateral", "combined"):
        raise ValueError(f"preprocessing.view must be frontal, lateral or combined, got {view!r}")
    quarantined = manifest["key"].isin(store.quarantine["key"])
    quarantine = manifest.loc[quarantined, ["key", "source", "patient_id"]].merge(
        store.quarantine, on="key", how="left"
    )
    stored = manifest[~quarantined].copy()
    stored["store_row"] = store.rows_of(stored["key"].to_numpy())
    chosen = stored if view == "combined" else stored[stored["view"] == view]
    report = {
        "images_listed": int(len(manifest)),
        "images_stored": int(len(stored)),
        "images_quarantined": int(len(quarantine)),
        "quarantine_reasons": quarantine["reason"].value_counts().to_dict(),
        "view": view,
        "images_after_view_filter": int(len(chosen)),
        "images_by_split": chosen["split"].value_counts().to_dict(),
        "store_shape": list(store.shape),
        "store_fingerprint": store.fingerprint,
    }
    if len(quarantine) + len(stored) != len(manifest):
        raise AssertionError("every listed image must be stored or quarantined")
    return chosen.reset_index(drop=True), quarantine.reset_index(drop=True), report


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
