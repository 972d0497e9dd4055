"""Figures and tables of the study."""
