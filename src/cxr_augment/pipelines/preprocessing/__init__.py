"""The ``preprocessing`` pipeline: CheXpert ingestion to manifests and a tensor store."""

from cxr_augment.pipelines.preprocessing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
