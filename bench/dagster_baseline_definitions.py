"""The code location as kedro-dagster translates it unaided (the baseline of bench_dagster.py):
op-graph jobs, nested parameter configs, every per-dataset log line.

One thing is done for it: kedro-dagster turns each dataset's ``_describe()`` into Dagster
config and turns paths into strings only at the top level, so the report's inputs
(``OptionalDataset``, whose description nests its dataset's, path included) stop its
translation with "Unable to resolve config type PurePosixPath". Here their descriptions hold
strings; nothing it measures changes.
"""

import os
from pathlib import PurePath

import dagster as dg
from kedro_dagster import KedroProjectTranslator

from cxr_augment.datasets import OptionalDataset, ReadOnlyDataset


def _plain(described: dict) -> dict:
    return {
        k: _plain(v) if isinstance(v, dict) else str(v) if isinstance(v, PurePath) else v
        for k, v in described.items()
    }


for _cls in (OptionalDataset, ReadOnlyDataset):
    _cls._describe = (lambda describe: lambda self: _plain(describe(self)))(_cls._describe)

location = KedroProjectTranslator(env=os.environ.get("KEDRO_ENV", "local")).to_dagster()
defs = dg.Definitions(
    assets=list(location.named_assets.values()),
    resources={**location.named_resources, "io_manager": dg.fs_io_manager},
    jobs=list(location.named_jobs.values()),
    executor=location.named_executors.get("sequential", dg.in_process_executor),
)
