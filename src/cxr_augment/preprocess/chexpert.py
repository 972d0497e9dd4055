"""The CheXpert release: file layout, CSV schema and label conventions.

Facts from the public release (Irvin et al., 2019) and the ``cheXpert-test-set-labels``
repository; the demo dataset is written to this schema and the ingestion reads it.

The rules come in two kinds. Table rules (``check_header``, ``parse_labels``, ``check_paths``)
are fatal: a table that breaks them cannot be used, so every violation of the three files is
collected in one pass (``Findings``) and raised as one ``IngestionError`` with the count and
the first N in file order (file, row as in the file, column, rule, value). Row rules
(``metadata_reasons``, and a missing or undecodable image) quarantine the row's image with the
reason and the run goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

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


# --- where the files sit under the dataset root (the catalog's filepaths) --------------------

CSV_FILES = {
    "train.csv": f"{SMALL_RELEASE}/train.csv",
    "valid.csv": f"{SMALL_RELEASE}/valid.csv",
    "groundtruth.csv": "groundtruth.csv",
}
# the folders whose images the CSVs list, and the CSV that lists them
IMAGE_FOLDERS = {
    f"{SMALL_RELEASE}/train": "train.csv",
    f"{SMALL_RELEASE}/valid": "valid.csv",
    f"{FULL_RELEASE}/test": "groundtruth.csv",
}
ROOT_SETTING = (
    "chexpert_root in conf/<env>/globals.yml; the chexpert environment reads it from the "
    "CHEXPERT_ROOT environment variable"
)
AGE_RANGE = (0, 120)  # years: a plausible human age (the release writes integers)

PATH_PATTERN = re.compile(
    r"^(?P<release>CheXpert-v1\.0(?:-small)?)/(?P<source>train|valid|test)/patient(?P<patient>\d+)"
    r"/study(?P<study>\d+)/view(?P<view_index>\d+)_(?P<view>frontal|lateral)\.(?:jpg|jpeg|png)$",
    re.IGNORECASE,
)
STUDY_PATTERN = re.compile(
    r"^(?P<release>CheXpert-v1\.0(?:-small)?)/(?P<source>test)/patient(?P<patient>\d+)"
    r"/study(?P<study>\d+)$",
    re.IGNORECASE,
)
PATH_EXPECTED = "<release>/<split>/patientNNNNN/studyN/viewN_<frontal|lateral>.jpg"
STUDY_EXPECTED = "<release>/test/patientNNNNN/studyN"


# --- rule violations ---------------------------------------------------------------------------


def csv_row(i: int) -> int:
    """Line number in the file of the i-th data row (0-based): the header is line 1."""
    return int(i) + 2


@dataclass(frozen=True)
class Violation:
    """One broken rule: the file, its row (line in the file, header = 1; None: the whole
    file), the column, the rule and the offending value (with an optional note)."""

    file: str
    row: int | None
    column: str
    rule: str
    value: str
    note: str = ""

    def __str__(self) -> str:
        where = self.file if self.row is None else f"{self.file}, row {self.row}"
        what = f"{self.column} = {self.value!r}" if self.column else self.value
        return f"{where}: {self.rule}: {what}" + (f" ({self.note})" if self.note else "")


class ChexpertFormatError(ValueError):
    """A CheXpert table breaks a rule: the message names the file, the row and the rule."""

    def __init__(self, file: str, row: int | None, rule: str, detail: str) -> None:
        where = f"{file}" if row is None else f"{file}, row {row}"
        super().__init__(f"{where}: {rule}: {detail}")
        self.file, self.row, self.rule = file, row, rule


class IngestionError(ChexpertFormatError):
    """Every fatal rule violation of an ingestion, in one error.

    ``violations`` holds the first ones in file order (train.csv, valid.csv, groundtruth.csv;
    then by row), ``count`` all of them; ``file``, ``row`` and ``rule`` are the first's.
    """

    def __init__(
        self,
        violations: list[Violation],
        count: int,
        files: dict[str, str] | None = None,
        root_note: str = "",
    ) -> None:
        """``files``: full path of each file with a violation (all, not only those shown)."""
        lines = [
            f"CheXpert ingestion: {count} rule violation(s) make the tables unusable; "
            f"the first {len(violations)} in file order:"
        ]
        lines += [f"  {v}" for v in violations]
        if count > len(violations):
            lines.append(f"  ... and {count - len(violations)} more")
        if files:
            lines.append("Files: " + "; ".join(f"{f} = {path}" for f, path in files.items()))
        if root_note:
            lines.append(root_note)
        ValueError.__init__(self, "\n".join(lines))
        first = violations[0]
        self.file, self.row, self.rule = first.file, first.row, first.rule
        self.violations, self.count = violations, count


class Findings:
    """Rule violations collected in one pass over the tables.

    Every violation is counted; of each call's rows only the first ``limit`` are kept, which
    is enough to show the first ``limit`` of all in file order (memory stays bounded when a
    shifted column breaks every row of train.csv).
    """

    def __init__(self, limit: int = 20) -> None:
        self.limit = max(1, int(limit))
        self.count = 0
        self._kept: list[tuple[int, Violation]] = []

    def __len__(self) -> int:
        return self.count

    def add(self, violation: Violation) -> None:
        self.count += 1
        self._keep(violation)

    def add_rows(self, file: str, mask, column: str, rule: str, values, note="") -> None:
        """Rows where ``mask`` holds break ``rule``; ``values`` (and ``note``, a string or
        one per row) are aligned with the table's rows."""
        idx = np.flatnonzero(np.asarray(mask, dtype=bool))
        self.count += len(idx)
        values = np.asarray(values, dtype=object)
        notes = None if isinstance(note, str) else np.asarray(note, dtype=object)
        for i in idx[: self.limit]:
            n = note if notes is None else str(notes[i])
            self._keep(Violation(file, csv_row(i), column, rule, str(values[i]), n))

    def _keep(self, violation: Violation) -> None:
        self._kept.append((len(self._kept), violation))

    def first(self) -> list[Violation]:
        """The first ``limit`` violations in file order, then row order."""
        order = {f: k for k, f in enumerate(CSV_FILES)}

        def key(item):
            seq, v = item
            return (order.get(v.file, len(order)), v.file, v.row or 0, seq)

        return [v for _, v in sorted(self._kept, key=key)[: self.limit]]

    def raise_if_any(self, files: dict[str, str] | None = None, root_note: str = "") -> None:
        """One ``IngestionError`` for everything collected; ``files`` maps file names to
        their full paths (those with a violation are named)."""
        if self.count:
            broken = [f for f in CSV_FILES if any(v.file == f for _, v in self._kept)]
            named = {f: (files or {}).get(f, f) for f in broken}
            raise IngestionError(self.first(), self.count, named, root_note)


def _first_error(findings: Findings) -> ChexpertFormatError:
    v = findings.first()[0]
    detail = (f"{v.column} = {v.value!r}" if v.column else v.value) + (
        f", {v.note}" if v.note else ""
    )
    return ChexpertFormatError(v.file, v.row, v.rule, detail)


# --- table rules (fatal: a table that breaks them cannot be used) ------------------------------


def normalise_header(table: pd.DataFrame) -> pd.DataFrame:
    """Column names without a byte-order mark or stray whitespace (a CSV saved by Excel)."""
    names = [str(c).replace("\ufeff", "").strip() for c in table.columns]
    if names == list(table.columns):
        return table
    out = table.copy()
    out.columns = names
    return out


def check_header(columns, expected: tuple[str, ...], file: str, findings: Findings) -> bool:
    """The header must be exactly ``expected`` (names and order); False when the rows cannot
    be read at all (another delimiter: the whole header is one column).

    An extra column is an error, not a warning: the release's header is fixed, and an extra
    column means a modified or a different file (a shifted export, another release's CSV).
    """
    cols = tuple(columns)
    if len(cols) == 1 and len(expected) > 1:
        for sep in (";", "\t", "|"):
            if sep in cols[0]:
                findings.add(
                    Violation(
                        file, 1, "", "delimiter",
                        f"the header is one column separated by {sep!r}",
                        "CheXpert's CSVs are comma-separated",
                    )
                )  # fmt: skip
                return False
    missing = [c for c in expected if c not in cols]
    extra = [c for c in cols if c not in expected]
    if missing:
        findings.add(Violation(file, 1, "", "missing columns", ", ".join(missing)))
    if extra:
        findings.add(Violation(file, 1, "", "extra columns", ", ".join(extra)))
    if not missing and not extra and cols != expected:
        findings.add(Violation(file, 1, "", "column order", f"expected {', '.join(expected)}"))
    return True


def check_columns(columns, expected: tuple[str, ...], file: str) -> None:
    """The header must be exactly ``expected``; raises on the first violation."""
    findings = Findings(1)
    check_header(columns, expected, file, findings)
    if findings:
        raise _first_error(findings)


LABEL_TEXT = {"1.0": 1.0, "1": 1.0, "0.0": 0.0, "0": 0.0, "-1.0": -1.0, "-1": -1.0, "": None}


def parse_labels(
    table, file: str, allowed: tuple[str, ...] = tuple(LABEL_TEXT), findings: Findings | None = None
):
    """Label columns (read as text) to floats, NaN for empty.

    Any other value is an error: raised at once, or (with ``findings``) collected for every
    row, the value read as NaN. A column absent from the table is all NaN (its header
    violation is reported by ``check_header``).
    """
    out = {}
    rule_text = "allowed {1, 0, -1, empty}" if "" in allowed else "allowed {0, 1}"
    for obs in OBSERVATIONS:
        if obs not in table.columns:
            out[obs] = np.full(len(table), np.nan)
            continue
        # few distinct values: map through categories, not string by string
        cat = pd.Categorical(table[obs].fillna("").astype(str))
        values = [str(v).strip() for v in cat.categories]
        bad = [k for k, v in enumerate(values) if v not in allowed]
        if bad:
            mask = np.isin(cat.codes, bad)
            if findings is None:
                i = int(np.flatnonzero(mask)[0])
                shown = f"{obs} = {str(table[obs].iloc[i]).strip()!r}"
                raise ChexpertFormatError(file, csv_row(i), "label value", f"{shown}, {rule_text}")
            text = table[obs].fillna("").astype(str).str.strip()
            findings.add_rows(file, mask, obs, "label value", text, rule_text)
        lut = np.array(
            [np.nan if LABEL_TEXT.get(v) is None or v not in allowed else LABEL_TEXT[v]
             for v in values] + [np.nan]
        )  # fmt: skip
        out[obs] = lut[cat.codes]  # code -1 (missing) takes the last entry, NaN
    return pd.DataFrame(out, index=table.index)


def check_paths(
    paths,
    file: str,
    root_release: tuple[str, ...] = (SMALL_RELEASE, FULL_RELEASE),
    findings: Findings | None = None,
    column: str = "Path",
) -> np.ndarray:
    """Paths are non-empty, relative, stay inside the root, start with a release folder and
    are unique; returns the rows that break a rule (one rule reported per row, the first).

    Without ``findings`` the first offending row raises; vectorised either way.
    """
    text = pd.Series(list(paths), dtype=object).astype(str)
    own = findings if findings is not None else Findings(1)
    bad = np.zeros(len(text), dtype=bool)

    def rule(mask, name: str, note="") -> None:
        mask = np.asarray(mask, dtype=bool) & ~bad
        own.add_rows(file, mask, column, name, text, note)
        bad[mask] = True

    rule(text.str.strip() == "", "empty path")
    rule(text.str.match(r"^([/\\]|[A-Za-z]:)"), "absolute path")
    rule(text.str.contains(r"(?:^|[/\\])\.\.(?:[/\\]|$)", regex=True), "path escapes the root")
    rule(
        ~text.str.startswith(tuple(f"{r}/" for r in root_release)),
        "path outside the release",
        f"expected it to start with {' or '.join(root_release)}",
    )
    dup = text.duplicated().to_numpy()
    if dup.any():
        first_row = pd.Series(np.arange(len(text))).groupby(text.to_numpy()).transform("min")
        notes = np.full(len(text), "", dtype=object)
        notes[dup] = [f"first at row {csv_row(j)}" for j in first_row.to_numpy()[dup]]
        rule(dup, "duplicate path", notes)
    if findings is None and own:
        raise _first_error(own)
    return bad


def parse_paths(paths: pd.Series, pattern: re.Pattern = PATH_PATTERN) -> pd.DataFrame:
    """Release, source split, patient, study (and view) of every path; NaN where the path
    does not match ``pattern``."""
    return paths.str.extract(pattern)


# --- row rules (the row's image is quarantined with the reason; the run goes on) ----------------


def metadata_reasons(
    table: pd.DataFrame, view_in_name: pd.Series, age_range: tuple[float, float] = AGE_RANGE
) -> pd.DataFrame:
    """Why each row's metadata cannot be trusted: ``rule`` and ``reason`` ("" when sound).

    Each rule quarantines the row's image rather than stopping the run: the image and its
    labels may be sound, one bad row of 223,414 should not stop a study, and the quarantine
    table shows the row, the rule and the value. What a user would expect of each:

    - ``Sex`` is one of Male, Female, Unknown, as released; an abbreviation ("F") or an empty
      cell (the release writes Unknown) is a row someone edited or another source.
    - ``Age`` is a number of years in ``age_range`` (0-120); "abc" or 130 is not an age, and
      an empty cell is not how the release writes one.
    - ``Frontal/Lateral`` is Frontal or Lateral and agrees with the file name
      (``viewN_frontal.jpg`` / ``viewN_lateral.jpg``): when they contradict, which is right is
      unknown, and a view filter (thesis Table 10) would sort the image by the file name.
    - ``AP/PA`` is AP, PA, LL or RL for a frontal image and empty for a lateral one (the
      release's convention); an unknown value, an empty one for a frontal or one given for a
      lateral is a contradiction too.
    """
    n = len(table)
    rules = np.full(n, "", dtype=object)
    reasons = np.full(n, "", dtype=object)

    def flag(mask, name: str, template: str, values: pd.Series | None = None) -> None:
        """``template`` formatted with each flagged row's value (only those rows)."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        add = np.array(
            [template.format(v) for v in values[mask]] if values is not None else template,
            dtype=object,
        )
        for out, value in ((rules, name), (reasons, add)):
            cur = out[mask]
            out[mask] = np.where(cur == "", value, cur + "; " + value)

    def col(name: str) -> pd.Series:
        return table[name].fillna("").astype(str).str.strip().reset_index(drop=True)

    name_view = view_in_name.fillna("").astype(str).str.lower().reset_index(drop=True)
    if "Sex" in table.columns:
        sex = col("Sex")
        flag(sex == "", "Sex", "Sex is empty (the release writes Unknown)")
        flag(
            (sex != "") & ~sex.isin(SEXES),
            "Sex",
            "Sex {!r} is not one of " + ", ".join(SEXES),
            sex,
        )
    if "Age" in table.columns:
        age = col("Age")
        num = pd.to_numeric(age, errors="coerce")
        lo, hi = age_range
        flag(age == "", "Age", "Age is empty")
        flag((age != "") & num.isna(), "Age", "Age {!r} is not a number", age)
        flag(
            num.notna() & ((num < lo) | (num > hi)),
            "Age",
            "Age {} is outside " + f"{lo:g}-{hi:g} years",
            age,
        )
    if "Frontal/Lateral" in table.columns:
        fl = col("Frontal/Lateral")
        known = fl.isin([FRONTAL, LATERAL])
        flag(~known, "Frontal/Lateral", "Frontal/Lateral {!r} is not Frontal or Lateral", fl)
        contra = known & (name_view != "") & (fl.str.lower() != name_view)
        flag(
            contra,
            "Frontal/Lateral",
            "Frontal/Lateral is {}",
            fl.str.cat(name_view, sep=" but the file name says "),
        )
    if "AP/PA" in table.columns:
        ap = col("AP/PA")
        flag(
            (ap != "") & ~ap.isin(PROJECTIONS),
            "AP/PA",
            "AP/PA {!r} is not one of " + ", ".join(PROJECTIONS) + " or empty",
            ap,
        )
        flag((ap == "") & (name_view == "frontal"), "AP/PA", "AP/PA is empty for a frontal image")
        flag(
            ap.isin(PROJECTIONS) & (name_view == "lateral"),
            "AP/PA",
            "AP/PA {!r} given for a lateral image (the release leaves it empty)",
            ap,
        )
    return pd.DataFrame({"rule": rules, "reason": reasons}, index=table.index)
