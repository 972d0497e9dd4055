"""Dagster definitions: the Kedro project translated by kedro-dagster, nothing more.

``KEDRO_ENV`` picks the Kedro environment (default ``local``; ``chexpert`` for a download).
"""

import os

import dagster as dg
from kedro_dagster import KedroProjectTranslator

translator = KedroProjectTranslator(env=os.environ.get("KEDRO_ENV", "local"))
location = translator.to_dagster()

defs = dg.Definitions(
    assets=list(location.named_assets.values()),
    resources={**location.named_resources, "io_manager": dg.fs_io_manager},
    jobs=list(location.named_jobs.values()),
    schedules=list(location.named_schedules.values()),
    sensors=list(location.named_sensors.values()),
    executor=location.named_executors.get("sequential", dg.in_process_executor),
)
