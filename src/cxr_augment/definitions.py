"""Dagster definitions: the Kedro project translated by kedro-dagster, and its asset checks.

``KEDRO_ENV`` picks the Kedro environment (default ``local``; ``chexpert`` for a download).
"""

import os

import dagster as dg

from cxr_augment.checks import asset_checks
from cxr_augment.orchestration.threads import limit_threads
from cxr_augment.orchestration.translate import translate

# a step process of the multiprocess executor: one torch thread (orchestration/threads.py)
limit_threads()

ENV = os.environ.get("KEDRO_ENV", "local")
location = translate(ENV)

defs = dg.Definitions(
    assets=list(location.named_assets.values()),
    asset_checks=asset_checks(ENV),
    resources={**location.named_resources, "io_manager": dg.fs_io_manager},
    jobs=list(location.named_jobs.values()),
    schedules=list(location.named_schedules.values()),
    sensors=list(location.named_sensors.values()),
    executor=location.named_executors.get("sequential", dg.in_process_executor),
)
