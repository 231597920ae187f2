"""The shared number formats: no negative zero, real minus signs, small ratios kept."""

from __future__ import annotations

import math

from workbench.results.fmt import fixed, ratio, signed


def test_values_that_round_to_zero_have_no_sign():
    assert fixed(-0.0) == "0.00" and fixed(-0.004) == "0.00" and fixed(-0.006) == "-0.01"
    assert signed(-0.0) == "0.00" and signed(-0.004) == "0.00" and signed(0.004) == "0.00"
    assert signed(-1.4) == "−1.40" and signed(0.3) == "+0.30"


def test_missing_and_tiny_values():
    assert fixed(None) == "—" and signed(math.nan) == "—" and ratio(math.inf) == "—"
    assert ratio(0.0) == "—" and ratio(0.0043) == "0.0043" and ratio(1.234) == "1.23"
