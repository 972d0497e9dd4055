"""Project pipelines: one per folder of ``pipelines/``, found by ``find_pipelines``."""

from __future__ import annotations

import sys

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# the demo study: render, preprocess, the headline generator, the headline experiments
# (`make run` then runs `reporting`, which reads whatever results exist)
DEFAULT = ("demo_data", "preprocessing", "generation_headline", "classification_headline")


def register_pipelines() -> dict[str, Pipeline]:
    _no_kedro_viz_update_check()
    # Kedro loads only the pipelines a run asks for; __default__ is built when its parts are
    pipelines = find_pipelines(raise_errors=True)
    if all(name in pipelines for name in DEFAULT):
        pipelines["__default__"] = sum((pipelines[n] for n in DEFAULT), Pipeline([]))
    return pipelines


def _no_kedro_viz_update_check() -> None:
    """In a ``kedro viz run`` server: no PyPI request, no false "Kedro-Viz None is here!".

    kedro-viz (12.5) asks PyPI for its latest version on every ``/api/version`` request, and
    has no setting to turn that off. Offline the answer is None, which it sends as the text
    "None" and compares as text ("12.5.0" < "None"), so the UI announces a release "None".
    Its server has imported that endpoint's module before it loads the project's pipelines;
    there the latest version becomes the installed one. No other process has that module
    loaded (``kedro viz build`` does, and writes a static, up-to-date answer anyway).
    """
    version = sys.modules.get("kedro_viz.api.rest.responses.version")
    if version is None or not hasattr(version, "get_latest_version"):
        return
    from packaging.version import parse

    installed = parse(str(version.__version__))
    version.get_latest_version = lambda: installed
