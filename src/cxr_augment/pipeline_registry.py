"""Project pipelines: one per folder of ``pipelines/``, found by ``find_pipelines``."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# the demo study: render, preprocess, the headline generator, the headline experiments, and
# the report of what ran
DEFAULT = ("demo_data", "preprocessing", "generation_headline", "classification_headline")


def register_pipelines() -> dict[str, Pipeline]:
    # Kedro loads only the pipelines a run asks for; __default__ is built when its parts are
    pipelines = find_pipelines(raise_errors=True)
    if all(name in pipelines for name in DEFAULT):
        from cxr_augment.pipelines.reporting.pipeline import build as report
        from cxr_augment.study import reporting_config

        study = sum((pipelines[n] for n in DEFAULT), Pipeline([]))
        # the report reads what this run makes directly (so it runs last), the rest if made
        pipelines["__default__"] = study + report(
            reporting_config(), frozenset(study.all_outputs())
        )
    return pipelines
