"""The ``reporting`` pipeline: the study's results in one self-contained report.html."""

from cxr_augment.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
