"""Dagster definitions: the Kedro project translated by kedro-dagster, and its asset checks.

``KEDRO_ENV`` picks the Kedro environment (default ``local``; ``chexpert`` for a download).
"""

import os

import dagster as dg

from cxr_augment.checks import asset_checks
from cxr_augment.orchestration.threads import limit_threads
from cxr_augment.orchestration.translate import definitions, translate

# a step process of the multiprocess executor: one torch thread (orchestration/threads.py)
limit_threads()

ENV = os.environ.get("KEDRO_ENV", "local")
# step processes of a multiprocess executor fork from a process that has loaded this module
location = translate(ENV, preload=__name__)

defs = definitions(location, asset_checks(ENV), dg.in_process_executor)
