"""Dagster asset checks: data quality rules on the catalog's datasets.

Each check loads its asset through the asset's own IO manager (the Kedro dataset) and calls a
plain function, so the rule itself is testable without Dagster.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from cxr_augment.preprocess import splits


def split_leak_result(split_table: pd.DataFrame) -> dg.AssetCheckResult:
    """Fails when a patient appears in more than one split."""
    leaks = splits.leaking_patients(split_table)
    patients = sorted(leaks["patient_id"].unique().tolist())
    return dg.AssetCheckResult(
        passed=not patients,
        metadata={"leaking_patients": len(patients), "examples": str(patients[:10])},
        description=None if not patients else f"{len(patients)} patients in two splits",
    )


def quarantine_result(report: dict) -> dg.AssetCheckResult:
    """Fails when an image is neither stored nor reported in the quarantine table."""
    accounted = report["images_stored"] + report["images_quarantined"]
    return dg.AssetCheckResult(
        passed=accounted == report["images_listed"],
        metadata={k: report[k] for k in ("images_listed", "images_stored", "images_quarantined")},
    )


def label_shift_result(
    stored: pd.DataFrame, listed: pd.DataFrame, max_shift: float = 0.02
) -> dg.AssetCheckResult:
    """Fails when the stored images' positive rate of an observation moved away from the
    listed images' (before quarantine) by more than ``max_shift`` or four binomial standard
    errors, whichever is larger: a quarantine that removes one class more than the other
    biases every later number."""
    from cxr_augment.preprocess.chexpert import OBSERVATIONS

    shifts, worst = {}, []
    for label in (c for c in OBSERVATIONS if c in stored.columns and c in listed.columns):
        a = (stored[label] == 1).mean() if len(stored) else float("nan")
        b = (listed[label] == 1).mean() if len(listed) else float("nan")
        se = (b * (1 - b) / max(len(stored), 1)) ** 0.5
        shifts[label] = round(float(a - b), 4)
        if not abs(a - b) <= max(max_shift, 4 * se):
            worst.append(f"{label}: {b:.3f} listed, {a:.3f} stored")
    return dg.AssetCheckResult(
        passed=not worst and len(stored) > 0,
        metadata={"stored": len(stored), "listed": len(listed), "shift": str(shifts)},
        description="; ".join(worst) if worst else ("no image stored" if not len(stored) else None),
    )


def augmented_size_result(manifest: pd.DataFrame, counts: pd.DataFrame) -> dg.AssetCheckResult:
    """Fails when the augmented set does not hold the images its strategy planned: per class,
    ``generated_images`` of the counts table (thesis Tables 4 / 5) made, and no more."""
    # the manifest lists the generated images (a "source" column, where present, marks reals)
    generated = manifest if "source" not in manifest else manifest[manifest["source"] != "real"]
    made = {
        name: int((generated["target"].round() == cls).sum()) if "target" in generated else 0
        for cls, name in ((0, "Negative"), (1, "Positive"))
    }
    planned = dict(zip(counts["class"], counts["generated_images"].astype(int), strict=True))
    passed = all(made.get(k, 0) == v for k, v in planned.items())
    return dg.AssetCheckResult(
        passed=passed,
        metadata={"planned": str(planned), "made": str(made)},
        description=None if passed else f"planned {planned}, made {made}",
    )


def metrics_result(metrics: pd.DataFrame) -> dg.AssetCheckResult:
    """Fails when a metric's point estimate is missing (NaN): a table would show a blank."""
    bad = metrics[metrics["value"].isna()] if "value" in metrics else metrics.iloc[0:0]
    where = [f"{r.get('metric')} on {r.get('split')}" for _, r in bad.iterrows()]
    return dg.AssetCheckResult(
        passed=not where,
        metadata={"rows": len(metrics), "nan": len(where)},
        description=None if not where else "NaN: " + ", ".join(where[:10]),
    )


def memorisation_result(summary: dict) -> dg.AssetCheckResult:
    """Fails when more of a generated set sits closer to a training image than real images sit
    to each other (the real-to-real nearest-neighbour percentile) than ``max_share`` allows.
    A skipped generator (no images) passes with its reason."""
    meta = {
        k: summary[k]
        for k in (
            "share",
            "share_pixel",
            "share_feature",
            "max_share",
            "n_gen",
            "n_train",
            "percentile",
        )
        if k in summary
    }
    if summary.get("status") != "ok":
        return dg.AssetCheckResult(passed=True, metadata={"status": str(summary.get("status"))})
    passed = bool(summary["share"] <= summary["max_share"])
    return dg.AssetCheckResult(
        passed=passed,
        metadata=meta,
        description=None
        if passed
        else f"{summary['share']:.1%} of the generated images look memorised "
        f"(limit {summary['max_share']:.1%}): downstream use is blocked",
    )


def _memorisation_check(prefix: str, generator: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        # kedro-dagster turns the dataset generation.<g>.memorisation_summary into a key path
        asset=dg.AssetKey([prefix, "generation", generator, "memorisation_summary"]),
        name=f"{generator}_not_memorised",
        description=f"Generator {generator}: at most max_share of its images closer to a "
        "training image than the real-to-real nearest-neighbour percentile (blocks downstream "
        "use).",
        blocking=True,
    )
    def not_memorised(context, summary: dict) -> dg.AssetCheckResult:
        return memorisation_result(summary)

    return not_memorised


def asset_checks(prefix: str) -> list[dg.AssetChecksDefinition]:
    """The project's checks, for assets under the Kedro environment ``prefix``."""

    @dg.asset_check(
        asset=dg.AssetKey([prefix, "split_table"]),
        name="no_patient_in_two_splits",
        description="Every patient's images sit in exactly one split (blocks what follows).",
        blocking=True,
    )
    def no_patient_in_two_splits(split_table: pd.DataFrame) -> dg.AssetCheckResult:
        return split_leak_result(split_table)

    @dg.asset_check(
        asset=dg.AssetKey([prefix, "preprocessing_report"]),
        name="no_image_unreported",
        description="Every listed image is stored or in the quarantine table (blocks what "
        "follows).",
        blocking=True,
    )
    def no_image_unreported(preprocessing_report: dict) -> dg.AssetCheckResult:
        return quarantine_result(preprocessing_report)

    from cxr_augment.study import generation_config

    # transformed real images are near-copies by construction: only generators are gated
    generators = list(generation_config()["generators"])
    memorised = [_memorisation_check(prefix, g) for g in generators]

    @dg.asset_check(
        asset=dg.AssetKey([prefix, "manifest"]),
        name="label_distribution_kept",
        description="The stored images' positive rate of each observation is within 0.02 (or "
        "four standard errors) of the listed images': quarantine did not bias the classes "
        "(blocks what follows).",
        additional_ins={"listed": dg.AssetIn(key=dg.AssetKey([prefix, "manifest_labelled"]))},
        blocking=True,
    )
    def label_distribution_kept(manifest: pd.DataFrame, listed: pd.DataFrame):
        return label_shift_result(manifest, listed)

    from cxr_augment.study import study_config

    per_experiment = []
    for name, exp in study_config()["experiments"].items():
        per_experiment.append(_metrics_check(prefix, name))
        if exp.get("augmentation") or exp.get("generator"):
            per_experiment.append(_size_check(prefix, name))
    return [
        no_patient_in_two_splits,
        no_image_unreported,
        label_distribution_kept,
        *memorised,
        *per_experiment,
    ]


def _metrics_check(prefix: str, experiment: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey([prefix, experiment, "metrics"]),
        name="no_nan_metric",
        description="Every metric of the experiment has a value on every split.",
    )
    def no_nan_metric(metrics: pd.DataFrame) -> dg.AssetCheckResult:
        return metrics_result(metrics)

    return no_nan_metric


def _size_check(prefix: str, experiment: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey([prefix, experiment, "augmented_manifest"]),
        name="augmented_set_as_planned",
        description="The augmented set holds, per class, the generated images its strategy "
        "planned (blocks the training on it).",
        additional_ins={
            "counts": dg.AssetIn(key=dg.AssetKey([prefix, experiment, "augmentation_counts"]))
        },
        blocking=True,
    )
    def augmented_set_as_planned(augmented_manifest: pd.DataFrame, counts: pd.DataFrame):
        return augmented_size_result(augmented_manifest, counts)

    return augmented_set_as_planned
