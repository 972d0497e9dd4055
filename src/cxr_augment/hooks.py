"""Kedro hooks of the project."""

from __future__ import annotations

import gc
import os

from kedro.framework.hooks import hook_impl

from cxr_augment.orchestration.threads import limit_threads


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, configuration, the catalog) to the collector's
    permanent generation.

    They live for the whole run, yet each full collection would rescan them all (torch,
    pandas, dagster... a few million objects), and a forked worker that collects would touch
    their pages and copy them. Frozen, collections scan only what the nodes create. (No
    collection first: it would cost a full scan, the very thing this saves; the few garbage
    cycles alive at start-up are kept until the run ends.)
    """
    gc.freeze()


class RunHooks:
    @hook_impl
    def after_context_created(self, context) -> None:
        # the study's structure (experiments, seeds) is read before a context exists, from the
        # environment named by KEDRO_ENV: `kedro run --env study` names it for them too
        if context.env and not os.environ.get("KEDRO_ENV"):
            os.environ["KEDRO_ENV"] = context.env

    @hook_impl
    def before_pipeline_run(self) -> None:
        freeze_startup_objects()

    @hook_impl
    def before_node_run(self) -> None:
        # a ParallelRunner worker: one torch thread (orchestration/threads.py)
        limit_threads()

    @hook_impl
    def after_pipeline_run(self) -> None:
        gc.unfreeze()

    @hook_impl
    def on_pipeline_error(self) -> None:
        gc.unfreeze()
