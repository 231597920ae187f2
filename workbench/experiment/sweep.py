"""Sweep files: a base experiment plus axes, expanded into cells (ordinary experiments).

A sweep file names a base experiment (``base = "experiment.toml"`` or an inline
``[experiment]`` table, or both: the table then overrides the file) and axes with dotted
keys; the grid of their values gives the cells. Each cell is parsed by
``parse_experiment`` like any experiment and keyed by the content hash of its spec, so
finished cells are found again when a sweep is resumed. Example sweep file::

    name = "calibration-grid"
    base = "experiment.toml"
    [axes]
    calibration.method = ["entropy", "max"]
    calibration.n = [64, 256]
    build = [{backend = "onnxruntime", precision = "int8-static"},
             {backend = "onnxruntime", precision = "int8-dynamic"}]

``build`` values (a table or an array of tables) are added to the base's ``[[build]]``
list, so the base holds what every cell needs (the FP32 reference); every other axis
replaces the value at its dotted key.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError
from workbench.experiment.spec import parse_experiment, resolve_paths
from workbench.fileio import sha256_json
from workbench.results.records import SCHEMA_VERSION, AccuracyResult, BuildResult, RunResult
from workbench.results.serde import to_dict
from workbench.results.spec import Experiment
from workbench.results.sweep import DONE, CellBuild, CellResult

_TOP = {"name", "base", "experiment", "axes", "cpus_per_cell"}
_HASH_IGNORES = ("name", "source")  # a renamed cell is the same cell
SWEEP_VERSION = 1


@dataclass(frozen=True)
class SweepCell:
    """One point of the grid: an ordinary experiment plus its axis values and content key."""

    key: str
    params: tuple[tuple[str, str], ...]  # (axis, value as shown), in axis order
    experiment: Experiment

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def needs_gpu(self) -> bool:
        """True when a build runs on CUDA: the cell then reserves one whole GPU."""
        return any(b.device == "cuda" for b in self.experiment.builds)

    @property
    def times_cpu(self) -> bool:
        """True when a build's latency is measured on the CPU: the cell then times alone."""
        return not self.experiment.builds or any(b.device == "cpu" for b in self.experiment.builds)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file: its name, axes (values as shown) and cells in grid order."""

    name: str
    source: str
    axes: tuple[tuple[str, tuple[str, ...]], ...]
    cells: tuple[SweepCell, ...]
    cpus_per_cell: float = 1.0


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep file and expand it into cells; errors name the key and the fix.

    Example::

        spec = load_sweep("sweep.toml")
        [c.name for c in spec.cells]
    """
    p = Path(path)
    data = _read_toml(p, "sweep file")
    return parse_sweep(data, p.resolve().parent, str(p))


def parse_sweep(data: dict[str, Any], base_dir: Path, source: str = "sweep") -> SweepSpec:
    """Expand a TOML-shaped sweep dict (paths relative to ``base_dir``) into cells."""
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {sorted(_TOP)}")
    base = _base_dict(data, base_dir, source)
    axes = _axes(data.get("axes"), source)
    name = _sweep_name(data.get("name"), source)
    cpus = data.get("cpus_per_cell", 1.0)
    if isinstance(cpus, bool) or not isinstance(cpus, int | float) or cpus <= 0:
        raise ConfigError(f"{source}: cpus_per_cell = {cpus!r}; use a number > 0")
    cells = []
    for combo in itertools.product(*(values for _, values in axes)):
        merged = copy.deepcopy(base)
        shown = []
        for (key, _), value in zip(axes, combo, strict=True):
            _set(merged, key, value)
            shown.append((key, _show(value)))
        label = ", ".join(f"{k}={v}" for k, v in shown)
        merged["name"] = f"{name}[{label}]" if label else name
        where = f"{source} cell [{label}]"
        exp = parse_experiment(merged, base_dir=base_dir, source=where)
        cells.append(SweepCell(cell_key(exp), tuple(shown), exp))
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{source}: two cells are the same experiment; remove repeated values")
    shown_axes = tuple((k, tuple(_show(v) for v in vals)) for k, vals in axes)
    return SweepSpec(name, source, shown_axes, tuple(cells), float(cpus))


def _sweep_name(value: Any, source: str) -> str:
    """The sweep's name names its default folder (reports/sweeps/<name>): one plain component."""
    from workbench.experiment.rundir import safe_name
    from workbench.fileio import check_name

    if value is None:
        return safe_name(Path(source).stem)
    return check_name(value, f"{source}: name")


def cell_key(exp: Experiment) -> str:
    """Content hash of everything in an experiment that decides its results."""
    d = {k: v for k, v in to_dict(exp).items() if k not in _HASH_IGNORES}
    return sha256_json({"experiment": d, "v": SWEEP_VERSION})[:16]


def _read_toml(p: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {p} does not exist; check the path") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {p} cannot be read ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML ({exc}); fix the syntax there") from exc


def _base_dict(data: dict[str, Any], base_dir: Path, source: str) -> dict[str, Any]:
    """The base experiment as a dict whose paths are absolute (a base file's own paths resolve
    against its folder), with the inline ``[experiment]`` table merged over it."""
    if "base" not in data and "experiment" not in data:
        raise ConfigError(f"{source}: name a base experiment: base = <file> or [experiment]")
    base: dict[str, Any] = {}
    if "base" in data:
        if not isinstance(data["base"], str):
            raise ConfigError(f"{source}: base must be a path to an experiment file")
        path = Path(data["base"]).expanduser()
        path = path if path.is_absolute() else base_dir / path
        base = _absolute(_read_toml(path, "base experiment"), path.resolve().parent)
    inline = data.get("experiment", {})
    if not isinstance(inline, dict):
        raise ConfigError(f"{source}: [experiment] must be a table")
    return _merge(base, _absolute(inline, base_dir))


def _absolute(exp: dict[str, Any], folder: Path) -> dict[str, Any]:
    out = dict(exp)
    for table in ("model", "data"):
        if isinstance(out.get(table), dict):
            out[table] = resolve_paths(table, out[table], folder)
    gate = out.get("gate")
    if isinstance(gate, dict) and isinstance(gate.get("policy"), str) and gate["policy"]:
        p = Path(gate["policy"]).expanduser()
        out["gate"] = {**gate, "policy": str(p if p.is_absolute() else folder / p)}
    return out


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _axes(raw: Any, source: str) -> list[tuple[str, list[Any]]]:
    """Flatten ``[axes]`` (dotted keys become nested tables in TOML) into (key, values)."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [axes] must be a table of key = [values]")
    out: list[tuple[str, list[Any]]] = []

    def walk(prefix: str, table: dict[str, Any]) -> None:
        for k, v in table.items():
            key = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                walk(key, v)
            elif isinstance(v, list) and v:
                out.append((key, v))
            else:
                raise ConfigError(f"{source}: [axes] {key} must be a non-empty array of values")

    walk("", raw)
    return out


def _set(exp: dict[str, Any], key: str, value: Any) -> None:
    if key == "build":
        extra = value if isinstance(value, list) else [value]
        exp["build"] = [*exp.get("build", []), *copy.deepcopy(extra)]
        return
    *tables, leaf = key.split(".")
    node = exp
    for t in tables:
        child = node.setdefault(t, {})
        if not isinstance(child, dict):
            raise ConfigError(f"axis {key}: {t} is not a table in the base experiment")
        node = child
    node[leaf] = value


def _show(value: Any) -> str:
    """An axis value as a short label: builds by name, paths by their last part."""
    if isinstance(value, dict) and "backend" in value:
        return value.get("name") or _build_label(value)
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return "+".join(_show(v) for v in value)
    if isinstance(value, str):
        return Path(value).name if ("/" in value or value.endswith(".onnx")) else value
    return json.dumps(value)


def _build_label(raw: dict[str, Any]) -> str:
    from workbench.experiment.spec import default_build_name
    from workbench.results.spec import BuildSpec

    fields = {f.name for f in dataclasses.fields(BuildSpec)}
    try:
        return default_build_name(BuildSpec(**{k: v for k, v in raw.items() if k in fields}))
    except TypeError:
        return json.dumps(raw, sort_keys=True)


def summarize_cell(cell: SweepCell, run: RunResult, run_dir: Path, out_dir: Path) -> CellResult:
    """A finished cell's record: per build accuracy, drop vs the baseline and agreement with
    95% CIs (Wilson; paired bootstrap for the drop), p50 latency at the first shape."""
    from workbench.evaluate.accuracy import load_predictions

    names = {b.name for b in run.builds}
    g = run.experiment.gate
    baseline = g.baseline if g.baseline in names else run.reference_build
    base = run.build(baseline)
    base_pred = _preds(load_predictions, run_dir, base.accuracy)
    builds = [_cell_build(b, base_pred, load_predictions, run_dir) for b in run.builds]
    verdict = _gate_verdict(run_dir, run)
    return CellResult(
        schema_version=SCHEMA_VERSION,
        key=cell.key,
        name=cell.name,
        params=dict(cell.params),
        status=DONE,
        error="",
        attempts=1,
        wall_s=0.0,
        run_dir=_relative(run_dir, out_dir),
        report=_relative(run_dir / "report.html", out_dir)
        if (run_dir / "report.html").is_file()
        else "",
        baseline=baseline,
        reference=run.reference_build,
        builds=builds,
        gate_passed=None if verdict is None else verdict == "PASS",
        placement=None,
        finished_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        gate_verdict=verdict or "",
    )


def _preds(load: Any, run_dir: Path, acc: AccuracyResult | None) -> Any:
    if acc is None:
        return None
    return load(run_dir, acc.predictions_file)


def _cell_build(b: BuildResult, base: Any, load: Any, run_dir: Path) -> CellBuild:
    from workbench.results.stats import paired_bootstrap, wilson_interval

    acc = b.accuracy
    n = acc.n if acc else 0
    a_lo, a_hi = wilson_interval(round(acc.accuracy * n), n) if acc else (math.nan, math.nan)
    g_lo, g_hi = wilson_interval(round(acc.agreement * n), n) if acc else (math.nan, math.nan)
    drop = lo = hi = None
    pred = _preds(load, run_dir, acc)
    if pred is not None and base is not None and len(pred) == len(base):
        ci = paired_bootstrap(base["label"].to_numpy(), base["pred"].to_numpy(),
                              pred["pred"].to_numpy(), "accuracy", 2000, 0.95, seed=0)  # fmt: skip
        drop, lo, hi = 0.0 - ci.diff, 0.0 - ci.high, 0.0 - ci.low  # no -0.0
    lat = b.latency[0] if b.latency else None
    return CellBuild(
        name=b.name,
        backend=b.backend,
        precision=b.precision,
        device=b.device,
        accuracy=acc.accuracy if acc else math.nan,
        accuracy_low=a_lo,
        accuracy_high=a_hi,
        drop=drop,
        drop_low=lo,
        drop_high=hi,
        agreement=acc.agreement if acc else math.nan,
        agreement_low=g_lo,
        agreement_high=g_hi,
        p50_ms=lat.p50_ms if lat else None,
        latency_shape=f"{lat.batch_size}x{lat.seq_len}" if lat else "",
    )


def _gate_verdict(run_dir: Path, run: RunResult) -> str | None:
    """The worst verdict of the cell's gate decisions (the judge's own), None when none ran."""
    g = run.experiment.gate
    files = [run_dir / "gate.json"] + [
        run_dir / f"gate-{c}" / "gate.json" for c in g.candidates[1:]
    ]
    files = [f for f in files if f.is_file()]
    if not g.enabled or not files:
        return None
    from workbench.results.gate import load_decision

    verdicts = {load_decision(f).verdict for f in files}
    return (
        "FAIL" if "FAIL" in verdicts else "INCONCLUSIVE" if "INCONCLUSIVE" in verdicts else "PASS"
    )


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
