"""cxr-augment: traditional and diffusion augmentation against class imbalance in chest X-rays."""

__version__ = "0.1.0"
