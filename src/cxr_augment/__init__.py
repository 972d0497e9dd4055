"""cxr-augment: traditional and diffusion augmentation against class imbalance in chest X-rays."""

import cv2 as _cv2

__version__ = "0.1.0"

# Parallelism here is by processes (one per core), and workers are forked from a parent that
# has already run OpenCV: its thread pool is not fork-safe once started, so it never starts.
_cv2.setNumThreads(1)
