"""Classifiers: models, training, metrics, paired tests, one experiment's run."""
