"""``augmentation``: the study's traditional-augmentation experiments (thesis Tables 11, 12)
and Figure 22. Their baselines (the classification experiments they are compared with) come
from the ``classification`` pipeline's outputs."""

from cxr_augment.pipelines.classification.pipeline import create_augmentation_pipeline


def create_pipeline(**kwargs):
    return create_augmentation_pipeline()


__all__ = ["create_pipeline"]
