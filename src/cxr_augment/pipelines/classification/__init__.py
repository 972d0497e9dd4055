"""The ``classification`` pipeline: the study's experiments and their reports."""

from cxr_augment.pipelines.classification.pipeline import create_pipeline

__all__ = ["create_pipeline"]
