"""Diffusion generation: image-quality and memorisation metrics."""
