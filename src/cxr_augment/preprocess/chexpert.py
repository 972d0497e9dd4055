"""The CheXpert release: file layout, CSV schema and label conventions.

Facts from the public release (Irvin et al., 2019) and the ``cheXpert-test-set-labels``
repository; the demo dataset is written to this schema and the ingestion reads it.
"""

from __future__ import annotations

OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
# "No Finding" is positive only when no pathology is positive or uncertain; support devices
# are not a pathology.
PATHOLOGIES = tuple(o for o in OBSERVATIONS if o not in ("No Finding", "Support Devices"))

META_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
TRAIN_COLUMNS = META_COLUMNS + OBSERVATIONS  # train.csv and valid.csv, exactly
GROUNDTRUTH_COLUMNS = ("Study",) + OBSERVATIONS  # groundtruth.csv (test, study level)

SMALL_RELEASE = "CheXpert-v1.0-small"  # train/ and valid/ (and the CSVs) live here
FULL_RELEASE = "CheXpert-v1.0"  # the test images live here

# First patient number of each split in the public release.
FIRST_PATIENT = {"train": 1, "valid": 64541, "test": 64741}
LAST_PATIENT = {"train": 64540, "valid": 64740, "test": 65240}

# Report-labeler values in train.csv; empty (NaN) means "not mentioned".
POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
LABEL_VALUES = (POSITIVE, NEGATIVE, UNCERTAIN)

SEXES = ("Male", "Female", "Unknown")
FRONTAL, LATERAL = "Frontal", "Lateral"
PROJECTIONS = ("AP", "PA", "LL", "RL")

# Thesis Table 1: image counts (positive, uncertain, negative, not mentioned) in train.csv.
TABLE1_COUNTS = {
    "No Finding": (22381, 0, 0, 201033),
    "Enlarged Cardiomediastinum": (10798, 12403, 21638, 178575),
    "Cardiomegaly": (27000, 8087, 11116, 177211),
    "Lung Opacity": (105581, 5598, 6599, 105636),
    "Lung Lesion": (9186, 1488, 1270, 211470),
    "Edema": (52246, 12984, 20726, 137458),
    "Consolidation": (28097, 27742, 14783, 152792),
    "Pneumonia": (6039, 18770, 2799, 195806),
    "Atelectasis": (33376, 33739, 1328, 154971),
    "Pneumothorax": (19448, 3145, 56341, 144480),
    "Pleural Effusion": (86187, 11628, 35396, 90203),
    "Pleural Other": (3523, 2653, 316, 216922),
    "Fracture": (9040, 642, 2512, 211220),
    "Support Devices": (116001, 1079, 6137, 100197),
}
TABLE1_IMAGES = 223414


def patient_name(number: int) -> str:
    """``patient00001`` style folder name."""
    return f"patient{number:05d}"


def image_path(split: str, patient: int, study: int, view_index: int, view: str) -> str:
    """The ``Path`` value of an image, relative to the dataset root.

    train and valid images live in the small release; test images in the full release.
    """
    release = FULL_RELEASE if split == "test" else SMALL_RELEASE
    kind = "frontal" if view.lower() == "frontal" else "lateral"
    return f"{release}/{split}/{patient_name(patient)}/study{study}/view{view_index}_{kind}.jpg"


def study_path(split: str, patient: int, study: int) -> str:
    """The ``Study`` value of groundtruth.csv (no trailing slash)."""
    release = FULL_RELEASE if split == "test" else SMALL_RELEASE
    return f"{release}/{split}/{patient_name(patient)}/study{study}"


# --- validation ------------------------------------------------------------------------------


class ChexpertFormatError(ValueError):
    """A CheXpert table breaks a rule: the message names the file, the row and the rule."""

    def __init__(self, file: str, row: int | None, rule: str, detail: str) -> None:
        where = f"{file}" if row is None else f"{file}, row {row}"
        super().__init__(f"{where}: {rule}: {detail}")
        self.file, self.row, self.rule = file, row, rule


def _csv_row(i: int) -> int:
    """1-based line number in the file of the i-th data row (the header is line 1)."""
    return int(i) + 2


def check_columns(columns, expected: tuple[str, ...], file: str) -> None:
    """The header must be exactly ``expected`` (names and order)."""
    cols = tuple(columns)
    missing = [c for c in expected if c not in cols]
    extra = [c for c in cols if c not in expected]
    if missing:
        raise ChexpertFormatError(file, 1, "missing columns", ", ".join(missing))
    if extra:
        raise ChexpertFormatError(file, 1, "extra columns", ", ".join(extra))
    if cols != expected:
        raise ChexpertFormatError(file, 1, "column order", f"expected {', '.join(expected)}")


LABEL_TEXT = {"1.0": 1.0, "1": 1.0, "0.0": 0.0, "0": 0.0, "-1.0": -1.0, "-1": -1.0, "": None}


def parse_labels(table, file: str, allowed: tuple[str, ...] = tuple(LABEL_TEXT)):
    """Label columns (read as text) to floats, NaN for empty; any other value is an error."""
    import numpy as np
    import pandas as pd

    out = {}
    for obs in OBSERVATIONS:
        # few distinct values: map through categories, not string by string
        cat = pd.Categorical(table[obs].fillna("").astype(str))
        values = [str(v).strip() for v in cat.categories]
        bad = [k for k, v in enumerate(values) if v not in allowed]
        if bad:
            i = int(np.flatnonzero(np.isin(cat.codes, bad))[0])
            shown = f"{obs} = {str(table[obs].iloc[i]).strip()!r}"
            rule = "allowed {1, 0, -1, empty}" if "" in allowed else "allowed {0, 1}"
            raise ChexpertFormatError(file, _csv_row(i), "label value", f"{shown}, {rule}")
        lut = np.array(
            [np.nan if LABEL_TEXT[v] is None else LABEL_TEXT[v] for v in values] + [np.nan]
        )
        out[obs] = lut[cat.codes]  # code -1 (missing) takes the last entry, NaN
    return pd.DataFrame(out, index=table.index)


def check_paths(
    paths, file: str, root_release: tuple[str, ...] = (SMALL_RELEASE, FULL_RELEASE)
) -> None:
    """Paths are relative, stay inside the root, start with a release folder, are unique.

    Vectorised: the first offending row is reported.
    """
    import numpy as np
    import pandas as pd

    text = pd.Series(list(paths), dtype=object).astype(str)

    def first(mask) -> int:
        return int(np.flatnonzero(np.asarray(mask))[0])

    absolute = (text == "") | text.str.match(r"^([/\\]|[A-Za-z]:)")
    if absolute.any():
        i = first(absolute)
        raise ChexpertFormatError(file, _csv_row(i), "absolute path", text.iloc[i])
    escapes = text.str.contains(r"(?:^|/)\.\.(?:/|$)", regex=True)
    if escapes.any():
        i = first(escapes)
        raise ChexpertFormatError(file, _csv_row(i), "path escapes the root", text.iloc[i])
    outside = ~text.str.split("/", n=1).str[0].isin(root_release)
    if outside.any():
        i = first(outside)
        raise ChexpertFormatError(
            file,
            _csv_row(i),
            "path outside the release",
            f"{text.iloc[i]} (expected {root_release})",
        )
    dup = text.duplicated()
    if dup.any():
        i = first(dup)
        j = first(text == text.iloc[i])
        raise ChexpertFormatError(
            file, _csv_row(i), "duplicate path", f"{text.iloc[i]} (first at row {_csv_row(j)})"
        )
