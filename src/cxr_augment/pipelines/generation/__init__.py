"""``generation``: diffusion models, generated sets, generation metrics (thesis 4.6, 5.6)."""

from cxr_augment.pipelines.generation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
