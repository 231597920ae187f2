"""Evaluation: task metrics and fidelity per sample, latency and memory."""
