"""Matplotlib charts as ``data:image/svg+xml;base64`` URIs (self-contained, script-free).

Figures are built with the object API (no pyplot, no global backend switch) and saved
with a fixed hash salt and no date, so the same records give byte-identical SVG.
An SVG loaded through ``<img>`` cannot run scripts, whatever its text contains.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

TITLE_CHARS = 44  # characters per title line of a 3.2-inch histogram at 7 pt
PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"]
_RC: Any = {  # typed loosely: matplotlib types rc keys as Literal
    "svg.hashsalt": "workbench-report",
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _to_uri(fig: Any) -> str:
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _horizontal() -> dict[str, Any]:
    """Horizontal box plots: ``orientation`` since Matplotlib 3.10, ``vert`` before."""
    import matplotlib

    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def _is_wide(values: Sequence[float]) -> bool:
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=np.float64)
    return bool(v.size and v.max() / v.min() > 10)


def _log_if_wide(ax: Any, values: Sequence[float]) -> None:
    """Log x-axis when values span more than 10x, so a slow eager baseline hides nothing."""
    if _is_wide(values):
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not beaten on both latency (lower) and accuracy (higher), by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


Interval = tuple[float, float]


def _errors(values: Sequence[float] | np.ndarray, cis: Sequence[Interval] | None) -> Any:
    """Matplotlib's (2, n) error array from intervals around ``values`` (NaN: no bar)."""
    if cis is None:
        return None
    v = np.asarray(values, dtype=np.float64)
    lo = np.asarray([c[0] for c in cis], dtype=np.float64)
    hi = np.asarray([c[1] for c in cis], dtype=np.float64)
    return np.nan_to_num(np.stack([v - lo, hi - v]).clip(min=0.0))


def _y_limits(acc: np.ndarray, cis: Sequence[Interval] | None) -> Interval:
    """A y-range (in %) holding every point and interval, never narrower than the widest CI."""
    lo = [float(a) for a in acc]
    hi = list(lo)
    widest = 0.0
    for c in cis or []:
        if all(np.isfinite(c)):
            lo.append(c[0] * 100)
            hi.append(c[1] * 100)
            widest = max(widest, (c[1] - c[0]) * 100)
    low, high = min(lo), max(hi)
    pad = max(widest, high - low, 0.5) * 0.15
    return max(low - pad, 0.0), min(high + pad, 100.0)


def _label_offsets(
    x: Sequence[float], y: Sequence[float], log_x: bool, y_range: Interval
) -> list[tuple[int, int]]:
    """Point offsets (in points) for name labels: right of the point unless near the right
    edge, and below instead of above when a neighbour's label already sits there."""
    xs = np.log10(np.asarray(x, dtype=np.float64)) if log_x else np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    nx = (xs - xs.min()) / (np.ptp(xs) or 1.0)
    ny = (ys - y_range[0]) / ((y_range[1] - y_range[0]) or 1.0)
    taken: list[tuple[float, float, int]] = []  # (x, y, vertical side) of placed labels
    out = []
    for i in np.argsort(xs, kind="stable"):
        dx = -6 if nx[i] > 0.8 else 6
        near = [t for t in taken if abs(t[0] - nx[i]) < 0.12 and abs(t[1] - ny[i]) < 0.15]
        dy = -12 if any(t[2] > 0 for t in near) else 5
        taken.append((float(nx[i]), float(ny[i]), dy))
        out.append((int(i), (dx, dy)))
    return [o for _, o in sorted(out)]


# Offsets (points) tried in turn for a label that overlaps one already placed: right, left,
# then further above and below.
_CANDIDATES = [(6, 5), (6, -14), (-6, 5), (-6, -14), (6, 19), (6, -28), (-6, 19), (-6, -28),
               (6, 33), (6, -42), (-6, 33), (-6, -42)]  # fmt: skip


def _separate_labels(fig: Any, ax: Any, labels: list[Any]) -> None:
    """Move name labels apart where their drawn boxes overlap each other or leave the plot:
    measure each label's real extent and take the first candidate offset that is clear
    (a simple, deterministic adjustText)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    area = ax.get_window_extent(renderer)
    placed: list[Any] = []
    for text in labels:
        first = tuple(text.xyann)
        for dx, dy in [first, *_CANDIDATES]:
            _offset(text, (dx, dy))
            box = text.get_window_extent(renderer).padded(6)  # browser fonts run taller
            inside = area.x0 <= box.x0 and box.x1 <= area.x1 and area.y0 <= box.y0
            if inside and box.y1 <= area.y1 and not any(box.overlaps(b) for b in placed):
                break
        else:  # nowhere clear: keep the first choice rather than the last resort
            _offset(text, first)
        placed.append(text.get_window_extent(renderer))


def _offset(text: Any, d: tuple[float, float]) -> None:
    text.xyann = d
    text.set_ha("left" if d[0] > 0 else "right")


def _build_point(ax: Any, i: int, name: str, xy: tuple[float, float], err: Any, on: bool) -> None:
    """One build: marker (filled on the front, hollow when dominated) with its error bars,
    each bar's SVG group named ``ci-y-<i>`` / ``ci-x-<i>``."""
    color = PALETTE[i % len(PALETTE)]
    xerr, yerr = err
    _, _, bars = ax.errorbar(
        [xy[0]],
        [xy[1]],
        yerr=None if yerr is None else yerr[:, i : i + 1],
        xerr=None if xerr is None else xerr[:, i : i + 1],
        fmt="o",
        ms=8 if on else 7,
        color=color,
        mfc=color if on else "white",
        mec="black" if on else color,
        mew=1.0 if on else 1.6,
        elinewidth=1.2,
        capsize=4,
        zorder=3,
        label=name if on else f"{name} (dominated)",
    )
    for coll in bars:
        (x0, _), (x1, _) = coll.get_segments()[0]
        coll.set_gid(f"ci-{'y' if x0 == x1 else 'x'}-{i}")


def accuracy_latency_scatter(
    names: Sequence[str],
    latency_ms: Sequence[float],
    accuracy: Sequence[float],
    shape_label: str,
    accuracy_ci: Sequence[Interval] | None = None,
    latency_ci: Sequence[Interval] | None = None,
) -> str:
    """Accuracy vs p50 latency per build with CI error bars; the Pareto front joins the builds
    no other beats on both, dominated builds are drawn hollow and off the line."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _figure(8.4, 4.6)
        ax = fig.add_subplot()
        pts = list(zip(latency_ms, accuracy, strict=True))
        front = pareto_front(pts)
        acc = np.asarray(accuracy, dtype=np.float64) * 100
        yerr = _errors(acc, [(lo * 100, hi * 100) for lo, hi in accuracy_ci or []] or None)
        err = (_errors(latency_ms, latency_ci), yerr)
        if len(front) > 1:
            fx, fy = [pts[i][0] for i in front], [acc[i] for i in front]
            ax.plot(fx, fy, color="#6b7280", lw=1.2, ls="--", zorder=2, label="Pareto front")
        y_range = _y_limits(acc, accuracy_ci)
        offsets = _label_offsets(latency_ms, list(acc), _is_wide(latency_ms), y_range)
        labels = []
        for i, (name, x) in enumerate(zip(names, latency_ms, strict=True)):
            _build_point(ax, i, name, (x, acc[i]), err, i in front)
            dx, dy = offsets[i]
            ha = "left" if dx > 0 else "right"
            labels.append(
                ax.annotate(
                    name, (x, acc[i]), xytext=(dx, dy), textcoords="offset points", ha=ha,
                    fontsize=8, gid=f"label-{i}",
                )
            )  # fmt: skip
        _log_if_wide(ax, latency_ms)
        ax.set_ylim(*y_range)
        _separate_labels(fig, ax, labels)
        ax.patch.set_gid("plot-area")
        ax.set_xlabel(f"p50 latency (ms), {shape_label}")
        ax.set_ylabel("accuracy (%), 95% CI")
        ax.grid(alpha=0.3)
        ncol = min(len(names) + 1, 3)
        ax.legend(
            loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, fontsize=7, frameon=False
        )
        return _to_uri(fig)


def latency_distribution(shapes: Sequence[str], series: Sequence[dict[str, list[float]]]) -> str:
    """One panel per shape: a box plot of every build's per-iteration latencies."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _figure(6.4, 1.0 + 0.45 * max(len(s) for s in series) * len(shapes))
        axes = fig.subplots(len(shapes), 1, squeeze=False)[:, 0]
        for ax, shape, data in zip(axes, shapes, series, strict=True):
            names = list(data)
            ax.boxplot(
                [data[n] for n in names],
                widths=0.6,
                showfliers=True,
                flierprops={"markersize": 2, "alpha": 0.5},
                **_horizontal(),
            )
            ax.set_yticks(range(1, len(names) + 1), names)
            _log_if_wide(ax, [v for n in names for v in data[n]])
            ax.set_title(shape, fontsize=9, loc="left")
            ax.grid(axis="x", alpha=0.3)
        axes[-1].set_xlabel("latency per iteration (ms)")
        return _to_uri(fig)


def wrap_name(name: str, width: int = TITLE_CHARS, lines: int = 3) -> str:
    """A tensor name broken at ``/`` into lines of at most ``width`` characters, so the layer
    number stays visible; only a name longer than ``lines`` lines loses its middle (``…``)."""
    parts = [p for p in name.split("/") if p] if "/" in name else [name]
    out: list[str] = []
    for part in parts:
        piece = ("/" if name.startswith("/") or out else "") + part
        if out and len(out[-1]) + len(piece) <= width:
            out[-1] += piece
        else:
            out += [piece[i : i + width] for i in range(0, len(piece), width)]
    if len(out) > lines:
        out = [*out[: lines - 1], "…" + out[-1][-(width - 1) :]]
    return "\n".join(out)


def threshold_histogram(
    name: str, counts: Sequence[float], edges: Sequence[float], thresholds: dict[str, float]
) -> str:
    """A tensor's |x| histogram (log counts) with each method's threshold as a vertical line."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _figure(3.4, 2.6)
        ax = fig.add_subplot()
        e = np.asarray(edges, dtype=np.float64)
        c = np.asarray(counts, dtype=np.float64)
        ax.stairs(np.maximum(c, 0.5), e, fill=True, color="#cbd5e1")
        ax.set_yscale("log")
        for i, (method, t) in enumerate(sorted(thresholds.items())):
            ax.axvline(t, color=PALETTE[i % len(PALETTE)], lw=1.2, label=f"{method} {t:.3g}")
        ax.set_title(wrap_name(name), fontsize=7, loc="left")
        ax.set_xlabel("|x|", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
        return _to_uri(fig)


def share_bars(
    categories: Sequence[str],
    first: Sequence[float],
    second: Sequence[float],
    labels: tuple[str, str],
    xlabel: str,
) -> str:
    """Two distributions over the same categories as side-by-side bars (e.g. length buckets)."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig = _figure(6.4, 2.6)
        ax = fig.add_subplot()
        x = np.arange(len(categories))
        ax.bar(x - 0.2, first, width=0.4, color=PALETTE[0], label=labels[0])
        ax.bar(x + 0.2, second, width=0.4, color=PALETTE[4], label=labels[1])
        ax.set_xticks(x, categories, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("share")
        ax.set_xlabel(xlabel)
        ax.legend(frameon=False, fontsize=7)
        ax.grid(axis="y", alpha=0.3)
        return _to_uri(fig)
