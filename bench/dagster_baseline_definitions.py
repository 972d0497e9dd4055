"""The code location as kedro-dagster translates it unaided (the baseline of bench_dagster.py):
op-graph jobs, nested parameter configs, every per-dataset log line."""

import os

import dagster as dg
from kedro_dagster import KedroProjectTranslator

location = KedroProjectTranslator(env=os.environ.get("KEDRO_ENV", "local")).to_dagster()
defs = dg.Definitions(
    assets=list(location.named_assets.values()),
    resources={**location.named_resources, "io_manager": dg.fs_io_manager},
    jobs=list(location.named_jobs.values()),
    executor=location.named_executors.get("sequential", dg.in_process_executor),
)
