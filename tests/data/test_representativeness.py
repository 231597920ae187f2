"""Representativeness checks: PSI/KS oracle, verdicts, the shortest-10% bias experiment."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.data.calibset import PoolFilters, build_calibration_set, with_report
from workbench.data.representativeness import (
    NOT_REPRESENTATIVE,
    REPRESENTATIVE,
    TextProfile,
    assess,
    psi,
    psi_bins,
)
from workbench.errors import DataError
from workbench.results.representativeness import RepresentativenessReport, load_report, save_report


@pytest.fixture(scope="module")
def target(rt_splits, tok) -> TextProfile:
    return TextProfile.from_texts(rt_splits.test["text"], tok, rt_splits.test["label"])


def test_psi_matches_a_numpy_oracle():
    rng = np.random.default_rng(0)
    e, a = rng.normal(30, 10, 5000), rng.normal(33, 10, 500)
    edges = np.quantile(e, np.linspace(0, 1, 11)[1:-1])
    ce = np.histogram(e, bins=[-np.inf, *edges, np.inf])[0] + 0.5
    ca = np.histogram(a, bins=[-np.inf, *edges, np.inf])[0] + 0.5
    pe, pa = ce / ce.sum(), ca / ca.sum()
    oracle = float(np.sum((pa - pe) * np.log(pa / pe)))
    assert psi(e, a, edges) == pytest.approx(oracle, rel=1e-9)
    assert psi(e, e, edges) == pytest.approx(0.0, abs=1e-12)
    assert len(psi_bins(e, 32)) == 1 and len(psi_bins(e, 5000)) == 9


def test_unbiased_set_is_representative(rt_splits, tok, target, tmp_path):
    cs = build_calibration_set(rt_splits.calibration_pool, 256, tok, root=tmp_path)
    cal = TextProfile.from_texts(cs.dataset["text"], tok, cs.dataset["label"])
    r = assess(cal, target, 128, unk_id=tok.unk_id, label_names=["rotten", "fresh"])
    assert r.verdict == REPRESENTATIVE, r.warnings
    assert r.length_psi < 0.1 and r.label_tv_distance < 0.02
    assert r.length_ks_pvalue > 0.01
    assert abs(r.vocab_token_coverage - r.vocab_token_coverage_reference) < 0.05
    assert r.calibration_lengths.n == 256 and r.target_lengths.n == len(target.lengths)


def test_shortest_ten_percent_is_flagged(rt_splits, tok, target, tmp_path):
    """The bias experiment: calibrating on the shortest 10% must be called out."""
    pool_len = tok.lengths(rt_splits.calibration_pool["text"])
    cut = int(np.percentile(pool_len, 10))
    biased = build_calibration_set(
        rt_splits.calibration_pool,
        128,
        tok,
        root=tmp_path,
        filters=PoolFilters(max_tokens=cut),
        target=target,
        target_name="test split",
    )
    r = biased.manifest.representativeness
    assert r is not None
    assert r.verdict == NOT_REPRESENTATIVE
    assert r.length_psi > 1.0 and r.length_ks_pvalue < 1e-10
    assert any("PSI" in w for w in r.warnings)
    assert any("word-piece" in w for w in r.warnings)
    unbiased = build_calibration_set(
        rt_splits.calibration_pool, 128, tok, root=tmp_path, target=target
    ).manifest.representativeness
    assert unbiased is not None and unbiased.verdict == REPRESENTATIVE
    assert r.calibration_lengths.p90 <= cut < unbiased.calibration_lengths.p50


def test_truncation_unk_and_labels_drift(tok):
    long_texts = [" ".join(["word"] * 200)] * 30 + ["short one"] * 70
    cal = TextProfile.from_texts(["short one", "a bit longer text"] * 50, tok, [0, 1] * 50)
    tgt = TextProfile.from_texts(long_texts, tok, [0] * 100)
    r = assess(cal, tgt, 128, unk_id=tok.unk_id, label_names=["a", "b"])
    assert r.target_lengths.truncated_share == pytest.approx(0.3)
    assert any("truncated" in w for w in r.warnings)
    assert any("label mix" in w for w in r.warnings)
    assert r.label_tv_distance == pytest.approx(0.5) and r.label_js_distance > 0.3
    emoji = TextProfile.from_texts(["ok \u2603\ufe0e \U0001f9ec\U0001fab8"] * 20, tok)
    r2 = assess(TextProfile.from_texts(["ok fine"] * 20, tok), emoji, 128, unk_id=tok.unk_id)
    assert r2.target_unk_rate > 0.05 and any("[UNK]" in w for w in r2.warnings)
    assert r2.label_tv_distance is None and r2.calibration_label_share is None


def test_report_round_trips_through_json(rt_splits, tok, target, tmp_path):
    cs = build_calibration_set(
        rt_splits.calibration_pool, 64, tok, root=tmp_path / "sets", target=target
    )
    report = with_report(cs, cs.manifest.representativeness)
    path = save_report(report, tmp_path / "run")
    assert path.name == "calibset_report.json"
    back = load_report(tmp_path / "run")
    assert isinstance(back, RepresentativenessReport)
    assert back == report or back.verdict == report.verdict
    assert back.manifest_sha256 == cs.manifest_sha256 and back.length_psi == report.length_psi
    assert back.profile_suggestion == report.profile_suggestion


def test_empty_sides_are_errors(tok):
    with pytest.raises(DataError, match="non-empty"):
        assess(TextProfile(np.array([], dtype=np.int64)), TextProfile(np.array([5])), 128)
