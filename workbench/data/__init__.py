"""Data: labelled datasets, splits, tokenization and calibration sets."""
