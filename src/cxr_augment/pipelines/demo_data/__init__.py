"""The ``demo_data`` pipeline: a CheXpert-format dataset rendered from a real chest CT."""

from cxr_augment.pipelines.demo_data.pipeline import create_pipeline

__all__ = ["create_pipeline"]
