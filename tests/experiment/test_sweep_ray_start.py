"""A local Ray for a sweep: workers at the caller's priority (Ray's default is nice 15, which
would time cells deprioritised) and no token-authentication notice on start."""

from __future__ import annotations

import logging
import os

import pytest

from workbench.experiment.sweep_run import SweepOptions, _connect


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.slow
def test_local_ray_workers_are_not_reniced_and_start_quietly(tmp_path):
    ray = pytest.importorskip("ray", reason="sweeps run on Ray (extra: sweep)")
    if ray.is_initialized():
        pytest.skip("a Ray is already running in this process")
    # Ray's loggers do not propagate to the root: listen where the notice is logged
    seen = _Records()
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice.addHandler(seen)
    try:
        _connect(ray, SweepOptions(out_dir=str(tmp_path), num_cpus=1))
    finally:
        notice.removeHandler(seen)
    try:
        niceness = ray.get(ray.remote(lambda: os.nice(0)).remote())
    finally:
        ray.shutdown()
    assert niceness == os.nice(0)
    assert not [m for m in seen.messages if "Token authentication" in m]
