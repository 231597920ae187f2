"""The terminal summary table: fits 100 columns by default, everything with ``wide=True``."""

from __future__ import annotations

from tests.run_fixtures import make_demo_run
from workbench.results.summary import WIDTH, format_summary, summary_frame


def _rows(text: str) -> dict[str, list[str]]:
    """Build name -> cells, for the table's body (between the header and the closing note)."""
    return {ln.split()[0]: ln.split() for ln in text.splitlines()[1:-1]}


def test_default_fits_100_columns_and_keeps_what_decides(tmp_path):
    run = make_demo_run(tmp_path / "r")
    text = format_summary(run)
    assert max(len(line) for line in text.splitlines()) <= WIDTH == 100
    head = text.splitlines()[0].split()
    for col in ("build", "acc", "p50", "b1", "b8", "×ort"):
        assert col in head
    rows = _rows(text)
    assert set(rows) == {b.name for b in run.builds}
    ref, ort32 = run.build("pytorch-fp32"), run.build("ort-fp32")
    dyn = run.build("ort-int8-dynamic")
    acc = dyn.accuracy.accuracy
    p50 = {x.batch_size: x.p50_ms for x in dyn.latency}
    base = {x.batch_size: x.p50_ms for x in ort32.latency}
    assert rows["ort-int8-dynamic"] == [
        "ort-int8-dynamic",
        "int8-dynamic",
        f"{acc:.1%}",
        f"{(acc - ref.accuracy.accuracy) * 100:+.2f}".replace("-", "−"),
        f"{dyn.accuracy.agreement:.1%}",
        f"{p50[1]:.1f}",
        f"{p50[8]:.1f}",
        f"{base[1] / p50[1]:.2f}",
        f"{base[8] / p50[8]:.2f}",
        "100%",
    ]
    assert rows["ort-int8-dynamic"][7:9] == ["1.61", "1.59"]  # 6.1 / 3.8 and 31 / 19.5
    assert rows["ort-fp32"][-1] == "—"  # no INT8 coverage for an FP32 build
    assert "--wide" in text.splitlines()[-1]


def test_narrow_width_drops_the_least_important_columns(tmp_path):
    run = make_demo_run(tmp_path / "r")
    text = format_summary(run, width=72)
    head = text.splitlines()[0]
    assert max(len(line) for line in text.splitlines()[:-1]) <= 72
    assert "agree" not in head and "build" in head and "Δ pts" in head


def test_wide_shows_every_column(tmp_path):
    run = make_demo_run(tmp_path / "r")
    text = format_summary(run, wide=True)
    for col in summary_frame(run).columns:
        assert col in text.splitlines()[0]
    assert len(text.splitlines()[0]) > WIDTH


def test_unmeasured_speed_up_is_a_dash_and_zero_has_no_sign(tmp_path):
    """A build timed only at batch 8 shows — under ×ort b1 (not 0.00); an accuracy change that
    rounds to zero prints 0.00 (not −0.00)."""
    import dataclasses

    run = make_demo_run(tmp_path / "r")
    ref = run.build(run.reference_build).accuracy
    builds = []
    for b in run.builds:
        if b.name == "ort-int8-dynamic":
            acc = dataclasses.replace(b.accuracy, accuracy=ref.accuracy - 1e-7)
            lat = [x for x in b.latency if x.batch_size != 1]
            b = dataclasses.replace(b, accuracy=acc, latency=lat)
        builds.append(b)
    rows = _rows(format_summary(dataclasses.replace(run, builds=builds)))
    cells = rows["ort-int8-dynamic"]
    assert cells[3] == "0.00" and cells[5] == "—" and cells[7] == "—"
    assert "0.00" not in rows["ort-int8-static"][7:9]
