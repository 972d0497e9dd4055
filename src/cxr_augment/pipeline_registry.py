"""Project pipelines: one per folder of ``pipelines/``, found by ``find_pipelines``."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# the demo study: render, preprocess, the headline generator, the headline experiments
# (`make run` then runs `reporting`, which reads whatever results exist)
DEFAULT = ("demo_data", "preprocessing", "generation_headline", "classification_headline")


def register_pipelines() -> dict[str, Pipeline]:
    # Kedro loads only the pipelines a run asks for; __default__ is built when its parts are
    pipelines = find_pipelines(raise_errors=True)
    if all(name in pipelines for name in DEFAULT):
        pipelines["__default__"] = sum((pipelines[n] for n in DEFAULT), Pipeline([]))
    return pipelines
