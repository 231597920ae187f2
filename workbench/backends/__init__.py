"""Runners: one module per backend, all behind the ``Runner`` contract in ``base``."""
