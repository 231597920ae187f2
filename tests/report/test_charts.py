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


def test_dominated_builds_lie_below_the_pareto_line():
    rng = np.random.default_rng(1)
    for _ in range(50):
        pts = [(float(x), float(y)) for x, y in rng.uniform(1, 10, size=(6, 2))]
        front = charts.pareto_front(pts)
        fx, fy = [pts[i][0] for i in front], [pts[i][1] for i in front]
        for i in set(range(len(pts))) - set(front):
            x, y = pts[i]
            if fx[0] <= x <= fx[-1]:  # under the drawn segments, strictly
                assert y < np.interp(x, fx, fy)


def _svg(uri: str) -> str:
    return base64.b64decode(uri.split(",", 1)[1]).decode()


def test_scatter_draws_both_intervals_for_every_build():
    acc_ci = [(0.7495, 0.7731), (0.7502, 0.7738)]
    lat_ci = [(5.9, 6.3), (6.0, 6.6)]
    svg = _svg(
        charts.accuracy_latency_scatter(
            ["fp32", "int8"], [6.1, 6.3], [0.7620, 0.7613], "b8", acc_ci, lat_ci
        )
    )
    for gid in ("ci-y-0", "ci-y-1", "ci-x-0", "ci-x-1"):
        assert f'id="{gid}"' in svg
    assert "int8 (dominated)" in svg and "fp32 (dominated)" not in svg


def test_y_range_is_never_tighter_than_the_intervals():
    acc = np.array([76.13, 76.20])  # the case: +0.08 pts apart, CIs of ±1.2 pts
    cis = [(0.7493, 0.7733), (0.7500, 0.7740)]
    low, high = charts._y_limits(acc, cis)
    assert low <= 74.93 and high >= 77.40 and high - low >= 2.4
    low, high = charts._y_limits(np.array([99.9, 100.0]), [(0.99, 1.0), (0.995, 1.0)])
    assert 0.0 <= low <= 99.0 and high == 100.0


def test_histogram_titles_keep_the_layer_number():
    name = "/bert/encoder/layer.11/attention/self/query/MatMul_output_0_QuantizeLinear_Output"
    lines = charts.wrap_name(name).split("\n")
    assert all(len(x) <= charts.TITLE_CHARS for x in lines)
    assert "".join(lines) == name and "layer.11" in lines[0]
    svg = _svg(charts.threshold_histogram(name, [5, 3, 1], [0.0, 1.0, 2.0, 3.0], {"max": 3.0}))
    assert "layer.11" in svg and "…" not in svg
    long = "/".join(f"block{i}" for i in range(40))
    assert charts.wrap_name(long).count("\n") == 2 and "…" in charts.wrap_name(long)
