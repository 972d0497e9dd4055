"""``generation_headline``: the subset of ``generation`` that the default pipeline runs."""

from cxr_augment.pipelines.generation.pipeline import create_headline_pipeline


def create_pipeline(**kwargs):
    return create_headline_pipeline()


__all__ = ["create_pipeline"]
