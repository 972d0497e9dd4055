"""``classification_headline``: the laptop-sized subset of the study that the default runs."""

from cxr_augment.pipelines.classification.pipeline import create_headline_pipeline


def create_pipeline(**kwargs):
    return create_headline_pipeline()


__all__ = ["create_pipeline"]
