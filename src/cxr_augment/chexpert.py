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
