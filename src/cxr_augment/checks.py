"""Dagster asset checks: data quality rules on the catalog's datasets.

Each check loads its asset through the asset's own IO manager (the Kedro dataset) and calls a
plain function, so the rule itself is testable without Dagster.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from cxr_augment import splits


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

    return [no_patient_in_two_splits, no_image_unreported]
