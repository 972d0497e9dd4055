"""How close an augmented copy stays to the image it was made from.

The misclassified strategy augments particular images: each copy is its parent transformed,
or a generator's image-conditioned edit of it. Whether a copy still shows its parent (its
view, its outline, its devices) is what the strategy relies on, and an edit's strength
decides it. ``copy_closeness`` measures it on the images as the classifier sees them, brought
to a small common size (the layout, not the texture): each copy's RMS grey-level distance to
its parent, its distance to the nearest other selected image, and whether its parent is the
nearest of all the selected images. The spacing of the selected images among themselves
(each one's distance to its nearest other) is the scale to read the distances against.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxr_augment.preprocess.tensor_store import TensorStore


def _small(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype(np.float64)


def _rms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS distances between the rows of ``a`` (n, d) and ``b`` (m, d): (n, m), in float64
    (the expanded square loses the small distances in float32)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0) / a.shape[1])


def _stats(values: np.ndarray) -> dict[str, float | None]:
    values = values[np.isfinite(values)]
    if not len(values):  # one selected image: no other to be near
        return {"mean": None, "median": None}
    return {"mean": float(np.mean(values)), "median": float(np.median(values))}


def copy_closeness(
    store: TensorStore,
    manifest: pd.DataFrame,
    augmented_store: TensorStore,
    size: int = 32,
) -> dict:
    """Each copy against its parent and the other selected images, summarised per class.

    Args:
        store: the real images (the parents, by ``parent_key``).
        manifest: the augmented set's rows; copies carry ``parent_key`` (a generator's class
            draws have none: nothing to measure).
        augmented_store: the copies, by ``key``.
        size: the side of the square both are brought to (area interpolation).

    Returns:
        ``status`` (``ok``, or ``no parents``), ``copies``, ``parents``, how the copies were
        made (``how``; an edit's ``strengths``), the comparison size, and overall and per
        class: ``rms_to_parent`` and ``rms_to_nearest_other`` (mean, median; grey levels
        0-255), ``parent_nearest_share``
        (the share of copies whose parent is the nearest selected image), and
        ``parent_spacing`` (the median distance of a selected image to its nearest other).
    """
    if "parent_key" not in manifest or manifest["parent_key"].isna().all():
        return {"status": "no parents", "copies": 0, "reason": "the set's images have no "
                "parent (a generator's class draws): nothing to compare"}  # fmt: skip
    rows = manifest[manifest["parent_key"].notna()].reset_index(drop=True)
    parents = list(dict.fromkeys(rows["parent_key"]))
    where = {k: i for i, k in enumerate(parents)}
    p = np.stack([_small(store.get(k), size).ravel() for k in parents])
    c = np.stack([_small(augmented_store.get(k), size).ravel() for k in rows["key"]])
    own = rows["parent_key"].map(where).to_numpy()
    d = _rms(c, p)  # copies x parents
    to_parent = np.sqrt(np.mean((c - p[own]) ** 2, axis=1))  # exact, not from the expansion
    d[np.arange(len(rows)), own] = to_parent
    other = d.copy()
    other[np.arange(len(rows)), own] = np.inf
    nearest_other = other.min(1) if len(parents) > 1 else np.full(len(rows), np.nan)
    nearest_is_parent = d.argmin(1) == own
    spacing = _rms(p, p)
    np.fill_diagonal(spacing, np.inf)
    parent_gap = spacing.min(1) if len(parents) > 1 else np.full(len(parents), np.nan)
    strengths = sorted(float(s) for s in rows["strength"].unique()) if "strength" in rows else []
    how = ", ".join(f"edit, strength {s:g}" for s in strengths) or "transformed copies"

    def summary(mask: np.ndarray, parent_mask: np.ndarray) -> dict:
        return {
            "copies": int(mask.sum()),
            "parents": int(parent_mask.sum()),
            "rms_to_parent": _stats(to_parent[mask]),
            "rms_to_nearest_other": _stats(nearest_other[mask]),
            "parent_nearest_share": float(nearest_is_parent[mask].mean()),
            "parent_spacing": _stats(parent_gap[parent_mask])["median"],
        }

    out = {
        "status": "ok",
        "how": how,
        "strengths": strengths,
        "comparison_size": f"{size} x {size}",
    }
    out |= summary(np.ones(len(rows), bool), np.ones(len(parents), bool))
    parent_class = rows.drop_duplicates("parent_key").set_index("parent_key")["target"]
    classes = parent_class.reindex(parents).to_numpy()
    by_class = {}
    for cls in sorted(rows["target"].dropna().unique(), reverse=True):
        name = "positive" if cls == 1 else "negative" if cls == 0 else f"target {cls:g}"
        by_class[name] = summary((rows["target"] == cls).to_numpy(), classes == cls)
    out["by_class"] = by_class
    return out
