"""The precision registry and the backends' capabilities agree, and bad descriptors are refused."""

from __future__ import annotations

import pytest

from workbench.backends.registry import MODULES, capabilities
from workbench.errors import ConfigError
from workbench.results.precision import (
    Precision,
    find_precision,
    precision,
    precision_names,
    register_precision,
)


def test_every_precision_a_backend_builds_is_registered():
    built = {p for name in MODULES for d in capabilities(name).devices
             for p in capabilities(name).builds(d)}  # fmt: skip
    assert built == set(precision_names())  # and none registered that nothing builds


def test_descriptors_say_what_the_engine_and_notes_ask():
    assert [p for p in precision_names() if precision(p).int8] == [
        "int8-static", "int8-dynamic", "int8-implicit", "int8-explicit"]  # fmt: skip
    assert [p for p in precision_names() if precision(p).calibrated] == [
        "fp8", "int8-static", "int8-dynamic", "int8-implicit", "int8-explicit"]  # fmt: skip
    assert precision("fp8").table == "fp8" and precision("int8-dynamic").ranges == "dynamic"
    assert find_precision("int9") is None


def test_unknown_and_inconsistent_descriptors_are_refused():
    with pytest.raises(ConfigError, match="'int8-statik' is unknown; did you mean 'int8-static'"):
        precision("int8-statik")
    with pytest.raises(ConfigError, match="dtype in"):
        Precision("int4", "int4")
    with pytest.raises(ConfigError, match="set calibrated=True"):
        Precision("x", "int8", "static", calibrated=False, table="int8")
    with pytest.raises(ConfigError, match="already registered differently"):
        register_precision(Precision("fp16", "bf16"))
