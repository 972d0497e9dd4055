"""Wiring of ``reporting``: one node reads every result the report shows (each through
``reporting.in.<dataset>``, ``None`` when not made) and writes ``report.html``."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from cxr_augment.pipelines.reporting import nodes
from cxr_augment.report.study_report import assets, input_name
from cxr_augment.study import reporting_config


def build(params: dict) -> Pipeline:
    """The report node: it reads every asset through ``reporting.in.<asset>`` (``None`` when
    not made), so it runs after whatever was run, on its own (`make run` runs it last)."""
    inputs = {
        "params": "params:reporting",
        "parameters": "parameters",
        "provenance": "reporting.provenance",
    }
    for asset in assets(params):
        inputs[nodes.argument(asset)] = input_name(asset)
    return Pipeline(
        [Node(nodes.assemble_report, inputs, "report.html", name="assemble_report")],
        tags=["report"],
    )


def create_pipeline(**kwargs) -> Pipeline:
    return build(reporting_config())
