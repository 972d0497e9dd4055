"""Traditional augmentation: transforms (NumPy/OpenCV and batched torch), strategies, augmented sets."""
