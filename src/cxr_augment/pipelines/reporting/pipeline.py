"""Wiring of ``reporting``: one node reads every result the report shows (each through
``reporting.in.<dataset>``, ``None`` when not made) and writes ``report.html``."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from cxr_augment.pipelines.reporting import nodes
from cxr_augment.report.study_report import assets, input_name
from cxr_augment.study import reporting_config


def build(params: dict, produced: frozenset[str] = frozenset()) -> Pipeline:
    """The report node. An asset in ``produced`` (made by the pipeline the report runs with)
    is read directly, so the report runs after it; any other through ``reporting.in.<asset>``
    (``None`` when not made)."""
    inputs = {
        "params": "params:reporting",
        "parameters": "parameters",
        "provenance": "reporting.provenance",
    }
    for asset in assets(params):
        inputs[nodes.argument(asset)] = asset if asset in produced else input_name(asset)
    return Pipeline(
        [Node(nodes.assemble_report, inputs, "report.html", name="assemble_report")],
        tags=["report"],
    )


def create_pipeline(**kwargs) -> Pipeline:
    return build(reporting_config())
