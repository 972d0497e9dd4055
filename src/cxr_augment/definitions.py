"""Dagster definitions: the Kedro project translated by kedro-dagster, and its asset checks.

``KEDRO_ENV`` picks the Kedro environment (default ``local``; ``chexpert`` for a download).
"""

import os

import dagster as dg
from kedro_dagster import KedroProjectTranslator

from cxr_augment.checks import asset_checks

ENV = os.environ.get("KEDRO_ENV", "local")
location = KedroProjectTranslator(env=ENV).to_dagster()

defs = dg.Definitions(
    assets=list(location.named_assets.values()),
    asset_checks=asset_checks(ENV),
    resources={**location.named_resources, "io_manager": dg.fs_io_manager},
    jobs=list(location.named_jobs.values()),
    schedules=list(location.named_schedules.values()),
    sensors=list(location.named_sensors.values()),
    executor=location.named_executors.get("sequential", dg.in_process_executor),
)
