"""CheXpert schema and label policies, image decoding and masks, splits, the tensor store."""
