"""Traffic rules: the Clopper–Pearson bound, Tango's paired-difference CI (coverage by
simulation), the three-way verdicts, and how traffic settles the accuracy question."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from workbench.gate.traffic import (
    CERTIFY,
    INCONCLUSIVE,
    TRAFFIC_ACCURACY,
    certify,
    cp_upper,
    paired_difference_ci,
    traffic_accuracy,
)
from workbench.results.gate import FAIL, PASS, GateCheck


@pytest.mark.parametrize(("k", "n"), [(0, 1500), (3, 1500), (40, 1500), (7, 240), (240, 240)])
def test_cp_upper_matches_scipy_exact_interval(k, n):
    # the one-sided 95 % bound is the upper end of the two-sided 90 % exact interval
    expected = binomtest(k, n).proportion_ci(confidence_level=0.90, method="exact").high
    assert cp_upper(k, n, 0.95) == pytest.approx(expected, abs=1e-9)


def test_cp_upper_zero_disagreements_is_the_rule_of_three():
    assert cp_upper(0, 3000) == pytest.approx(1 - 0.05 ** (1 / 3000))
    assert cp_upper(0, 3000) < 3 / 3000


@pytest.mark.parametrize(("pb", "pc"), [(0.01, 0.015), (0.003, 0.001), (0.02, 0.02)])
def test_traffic_ci_covers_the_true_difference(pb, pc):
    """Simulated traffic (1,500 rows, known per-row difference rates): the 95 % CI holds the
    true Δ in close to 95 % of samples."""
    rng = np.random.default_rng(7)
    n, sims = 1500, 800
    draws = rng.multinomial(n, [pb, pc, 1 - pb - pc], size=sims)
    inside = [
        lo <= pc - pb <= hi for lo, hi in (paired_difference_ci(b, c, n) for b, c, _ in draws)
    ]
    assert 0.92 <= np.mean(inside) <= 0.98


def test_traffic_ci_brackets_the_estimate_and_stays_wide_without_disagreements():
    lo, hi = paired_difference_ci(18, 14, 1500)
    assert lo < (14 - 18) / 1500 < hi
    lo0, hi0 = paired_difference_ci(0, 0, 1500)
    assert lo0 < 0 < hi0 and hi0 == pytest.approx(-lo0)


def test_certify_passes_rare_disagreement_and_is_never_fail():
    ok = certify("fp32", "int8", 3, 3000, 0.01, 0.95)
    assert ok.status == PASS and "certified" in ok.message and "n=3000" in ok.message
    few = certify("fp32", "int8", 2, 300, 0.01, 0.95)
    assert few.status == INCONCLUSIVE and few.details["rows_needed"] > 300
    # the rows it asks for do certify at the same disagreement rate
    need = few.details["rows_needed"]
    assert cp_upper(round(2 / 300 * need), need) <= 0.01
    many = certify("fp32", "int8", 90, 3000, 0.01, 0.95)
    assert many.status == INCONCLUSIVE and many.details["rows_needed"] is None
    assert "label the 90" in many.details["settle"]


def test_traffic_accuracy_three_ways():
    assert traffic_accuracy("a", "b", 10, 9, 1500, 0.01, 0.95).status == PASS
    assert traffic_accuracy("a", "b", 60, 5, 1500, 0.01, 0.95).status == FAIL
    unsure = traffic_accuracy("a", "b", 30, 12, 1500, 0.01, 0.95)
    assert unsure.status == INCONCLUSIVE and unsure.details["settle"]
    assert "n=1500 traffic rows, 42 labelled disagreements" in unsure.message


def _labelled(status: str, high: float) -> GateCheck:
    return GateCheck("accuracy_drop", status, "x → FAIL", 0.02, 0.01, {"ci_high": high})


def test_traffic_settles_an_undecided_labelled_rule():
    from workbench.gate.traffic import _decisive, _settle

    undecided = _labelled(FAIL, 0.005)  # CI straddles -limit: could not tell
    assert _decisive(undecided, 0.01) is None
    assert _decisive(_labelled(FAIL, -0.02), 0.01) == FAIL  # all of the CI beyond the limit
    settled = _settle(undecided, PASS, TRAFFIC_ACCURACY)
    assert settled.status == PASS and settled.details["own_status"] == FAIL
    assert settled.message.endswith("→ PASS (settled by traffic_accuracy)")
    assert CERTIFY != TRAFFIC_ACCURACY
