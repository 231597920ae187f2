"""Typed result records (dataclasses) and their JSON round-trip."""
