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
        description="Every patient's images sit in exactly one split.",
    )
    def no_patient_in_two_splits(split_table: pd.DataFrame) -> dg.AssetCheckResult:
        return split_leak_result(split_table)

    @dg.asset_check(
        asset=dg.AssetKey([prefix, "preprocessing_report"]),
        name="no_image_unreported",
        description="Every listed image is stored or in the quarantine table.",
    )
    def no_image_unreported(preprocessing_report: dict) -> dg.AssetCheckResult:
        return quarantine_result(preprocessing_report)

    from cxr_augment.study import generation_config

    # transformed real images are near-copies by construction: only generators are gated
    generators = list(generation_config()["generators"])
    memorised = [_memorisation_check(prefix, g) for g in generators]
    return [no_patient_in_two_splits, no_image_unreported, *memorised]
