"""Charts: the Pareto front against a brute-force oracle; SVG output is deterministic."""

from __future__ import annotations

import base64
import itertools

import numpy as np

from workbench.report import charts


def _brute_front(points):
    def dominated(i):
        xi, yi = points[i]
        return any(
            (xj <= xi and yj >= yi) and (xj < xi or yj > yi)
            for j, (xj, yj) in enumerate(points)
            if j != i
        )

    return {i for i in range(len(points)) if not dominated(i)}


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        pts = [(float(x), float(y)) for x, y in rng.integers(0, 6, size=(7, 2))]
        # exact duplicates are both kept by the brute force; the front keeps one of them
        got = set(charts.pareto_front(pts))
        want = _brute_front(pts)
        assert got <= want
        assert {pts[i] for i in got} == {pts[i] for i in want}


def test_charts_are_deterministic_svg():
    args = (["a", "b<&>"], [3.0, 6.0], [0.8, 0.82], "batch 1 × seq 128")
    one = charts.accuracy_latency_scatter(*args)
    two = charts.accuracy_latency_scatter(*args)
    assert one == two and one.startswith("data:image/svg+xml;base64,")
    svg = base64.b64decode(one.split(",", 1)[1]).decode()
    assert "<svg" in svg and "b&lt;&amp;&gt;" in svg and "<script" not in svg
    wide = charts.latency_distribution(["b1"], [{"torch": [900.0, 1100.0], "ort": [40.0, 45.0]}])
    assert wide.startswith("data:image/svg+xml;base64,")


def test_pareto_front_order_is_by_latency():
    pts = [(5.0, 0.9), (1.0, 0.7), (3.0, 0.8), (4.0, 0.75)]
    assert charts.pareto_front(pts) == [1, 2, 0]
    assert list(itertools.accumulate([pts[i][1] for i in [1, 2, 0]], max)) == [0.7, 0.8, 0.9]
