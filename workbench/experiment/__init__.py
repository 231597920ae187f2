"""Experiments: spec files, the Workspace, the engine that runs builds, and what runs on it."""
