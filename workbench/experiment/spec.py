"""Read an experiment TOML file into the typed ``Experiment`` spec, with field-level errors.

Unknown keys get a did-you-mean, wrong types name the key and the expected type, and
relative paths are resolved against the file's folder, so a run does not depend on
the directory it was started from.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from workbench.errors import ConfigError
from workbench.results.precision import find_precision, precision_names
from workbench.results.spec import (
    CALIBRATORS,
    DEVICES,
    GRAPHS,
    STRATEGIES,
    BuildSpec,
    CalibrationSpec,
    DataSpec,
    EvaluateSpec,
    Experiment,
    GateSpec,
    ModelSpec,
)

SHIPPED = Path(__file__).parent / "shipped"
DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "gate" / "default_policy.toml"
_TABLES = {
    "model": ModelSpec,
    "data": DataSpec,
    "calibration": CalibrationSpec,
    "evaluate": EvaluateSpec,
    "gate": GateSpec,
}
_TOP = {"name", "seed", "quick", "build", *_TABLES}
_PATHS = {
    "model": ("path", "tokenizer"),
    "data": ("file", "test", "calibration", "unlabeled", "disagreement_labels"),
}


def shipped_experiment(name: str = "demo") -> Path:
    """Path of an experiment file shipped with the package (``demo``, ``gpu``)."""
    path = SHIPPED / f"{name}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in SHIPPED.glob("*.toml"))
        raise ConfigError(f"no shipped experiment {name!r}; shipped: {', '.join(known)}")
    return path


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file; relative paths resolve against its folder.

    Example::

        exp = load_experiment("experiment.toml")
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"experiment file {p} does not exist; write one with `workbench init`"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"experiment file {p} cannot be read ({exc})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML ({exc}); fix the syntax there") from exc
    return parse_experiment(data, base_dir=p.resolve().parent, source=str(p))


def parse_experiment(
    data: dict[str, Any], base_dir: Path, source: str = "experiment"
) -> Experiment:
    """Build an Experiment from a TOML-shaped dict (what ``tomllib`` returns)."""
    _check_keys(data, _TOP, source)
    kwargs: dict[str, Any] = {"source": source}
    for key in ("name", "seed", "quick"):
        if key in data:
            kwargs[key] = _value(Experiment, key, data[key], source)
    for table, cls in _TABLES.items():
        raw = data.get(table, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: [{table}] must be a table")
        raw = resolve_paths(table, raw, base_dir)
        if table == "gate":
            kwargs[table] = _gate(raw, base_dir, f"{source} [gate]")
        else:
            kwargs[table] = _table(cls, raw, f"{source} [{table}]")
    builds = data.get("build", [])
    if not isinstance(builds, list):
        raise ConfigError(f"{source}: builds are [[build]] tables (an array of tables)")
    kwargs["builds"] = tuple(
        _build(b, f"{source} [[build]] #{i + 1}") for i, b in enumerate(builds)
    )
    exp = Experiment(**kwargs)
    check_experiment(exp)
    return exp


def check_experiment(exp: Experiment) -> None:
    """Cross-field checks that need no data or model loaded."""
    src, m, d = exp.source or "experiment", exp.model, exp.data
    if m.default and m.path:
        raise ConfigError(f"{src}: [model] sets both default = true and path; choose one")
    if not m.default and not m.path:
        raise ConfigError(
            f"{src}: [model] needs path = <HF folder or .onnx file>, or default = true"
        )
    if m.kind == "onnx" and not m.tokenizer:
        raise ConfigError(
            f"{src}: an .onnx model needs [model] tokenizer = <folder with tokenizer.json>"
        )
    if m.kind == "onnx" and not m.labels:
        raise ConfigError(f"{src}: an .onnx model needs [model] labels = [names in logit order]")
    if d.file and (d.test or d.calibration):
        raise ConfigError(f"{src}: [data] file splits one file; do not also set test/calibration")
    if d.calibration and not d.test:
        raise ConfigError(f"{src}: [data] calibration is set without test; set test = <file>")
    if not m.default and d.shipped:
        raise ConfigError(f"{src}: your model needs your data: set [data] file or test")
    if d.unlabeled and d.text_pair_column:
        raise ConfigError(
            f"{src}: [data] unlabeled traffic is text only; it does not serve sentence-pair tasks "
            "(text_pair_column) yet: remove unlabeled"
        )
    if d.disagreement_labels and not d.unlabeled:
        raise ConfigError(
            f"{src}: [data] disagreement_labels needs the traffic it labels: set [data] unlabeled"
        )
    if not 8 <= d.max_length <= 8192:
        raise ConfigError(f"{src}: [data] max_length = {d.max_length}; use 8..8192")
    c = exp.calibration
    _choice(src, "calibration", "strategy", c.strategy, STRATEGIES)
    _choice(src, "calibration", "calibrator", c.calibrator, CALIBRATORS)
    from workbench.calibration.fp8 import FP8_METHODS

    _choice(src, "calibration", "fp8_method", c.fp8_method, FP8_METHODS)
    if c.n < 1:
        raise ConfigError(f"{src}: [calibration] n = {c.n}; use at least 1")
    from workbench.calibration.table import check_methods

    try:
        check_methods([c.method, *c.compare])
    except ConfigError as exc:
        raise ConfigError(f"{src}: [calibration] {exc}") from None
    if c.calibrator == "ort" and any(b.graph == "fused" and _static(b) for b in exp.builds):
        raise ConfigError(
            f"{src}: static INT8 on the fused graph uses the workbench's calibration table; "
            "set [calibration] calibrator = 'workbench' or remove graph = 'fused'"
        )
    _check_evaluate(src, exp.evaluate, d.max_length)
    names = [b.name for b in exp.builds]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{src}: build names must be unique; repeated: {', '.join(dupes)}")


def _static(b: BuildSpec) -> bool:
    """Its precision fixes activation ranges at build time (from a calibration table)."""
    p = find_precision(b.precision)
    return p is not None and p.ranges == "static"


def _check_evaluate(src: str, e: EvaluateSpec, max_length: int) -> None:
    if e.n_test is not None and e.n_test < 1:
        raise ConfigError(f"{src}: [evaluate] n_test = {e.n_test}; use at least 1 (or leave out)")
    if e.iterations < 1 or e.warmup < 0 or e.max_seconds <= 0 or e.threads < 0:
        raise ConfigError(
            f"{src}: [evaluate] iterations >= 1, warmup >= 0, max_seconds > 0, threads >= 0"
        )
    for batch, seq in e.shapes:
        if batch < 1 or not 8 <= seq <= max_length:
            raise ConfigError(
                f"{src}: [evaluate] shape [{batch}, {seq}] invalid: batch >= 1 and "
                f"8 <= seq <= max_length ({max_length})"
            )


def _choice(src: str, table: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(
            f"{src}: [{table}] {key} = {value!r} is unknown; {hint}use one of {', '.join(choices)}"
        )


def default_build_name(b: BuildSpec) -> str:
    """``ort-int8-static``, ``torch-fp32``; a device other than the backend's default is
    named: ``torch-cuda-fp16`` (TensorRT runs on CUDA only: ``trt-fp16``)."""
    from workbench.backends.registry import backend_names, capabilities

    caps = capabilities(b.backend) if b.backend in backend_names() else None
    others = caps.devices[1:] if caps else tuple(d for d in DEVICES if d != "cpu")
    parts = [caps.short_name if caps else b.backend]
    if b.device in others:
        parts.append(b.device)
    parts.append(b.precision)
    if b.compile:
        parts.append("compile")
    if b.cuda_graphs:
        parts.append("graphs")
    if b.graph != "plain":
        parts.append(b.graph)
    parts.extend(b.recovery)
    return "-".join(parts)


def _build(raw: Any, source: str) -> BuildSpec:
    from workbench.backends.registry import backend_names, capabilities

    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a table")
    if "backend" not in raw:
        raise ConfigError(f"{source} needs backend = one of {', '.join(backend_names())}")
    b = _table(BuildSpec, raw, source)
    _choice(source, "build", "backend", b.backend, backend_names())
    _choice(source, "build", "device", b.device, DEVICES)
    _choice(source, "build", "precision", b.precision, precision_names())
    caps = capabilities(b.backend)
    if len(caps.devices) == 1 and b.device != caps.devices[0]:  # one device kind: that one
        b = dataclasses.replace(b, device=caps.devices[0])
    if (b.compile or b.cuda_graphs) and b.device not in caps.compile_on:
        where = _where("compile_on")
        raise ConfigError(f"{source}: compile / cuda_graphs apply to {where}")
    _choice(source, "build", "graph", b.graph, GRAPHS)
    if b.graph == "fused" and b.device not in caps.fused_graph_on:
        where = _where("fused_graph_on")
        raise ConfigError(
            f"{source}: graph = 'fused' applies to {where}; remove graph or set "
            + " or ".join(f"backend = {n!r}, device = {d!r}" for n, d in _pairs("fused_graph_on"))
        )
    if b.recovery:
        from workbench.backends.onnxruntime.recovery import recovery_refusal

        reason = recovery_refusal(b.recovery, b.backend, b.device, b.precision)
        if reason is not None:
            raise ConfigError(f"{source}: {reason}")
    return b if b.name else dataclasses.replace(b, name=default_build_name(b))


def _pairs(option: str) -> list[tuple[str, str]]:
    """(backend, device) pairs whose capabilities list ``option`` (e.g. ``compile_on``)."""
    from workbench.backends.registry import backend_names, capabilities

    return [(n, d) for n in backend_names() for d in getattr(capabilities(n), option)]


def _where(option: str) -> str:
    return " or ".join(f"backend = {n} on {d}" for n, d in _pairs(option))


def _gate(raw: dict[str, Any], base_dir: Path, source: str) -> GateSpec:
    from workbench.gate.policy import load_policy, parse_policy

    raw = dict(raw)
    inline = raw.pop("policy", None)
    spec = _table(GateSpec, {k: v for k, v in raw.items() if k != "policy_file"}, source)
    if isinstance(inline, dict):
        return dataclasses.replace(spec, policy=parse_policy(inline, f"{source} policy"))
    if inline is not None and not isinstance(inline, str):
        raise ConfigError(f"{source}: policy is a file path or an inline [gate.policy] table")
    path = Path(inline) if inline else DEFAULT_POLICY
    path = path if path.is_absolute() else base_dir / path
    return dataclasses.replace(spec, policy=load_policy(path), policy_file=str(path))


def resolve_paths(table: str, raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    out = dict(raw)
    for key in _PATHS.get(table, ()):
        value = out.get(key)
        if isinstance(value, str) and value:
            p = Path(value).expanduser()
            out[key] = str(p if p.is_absolute() else (base_dir / p).resolve())
    return out


def _check_keys(data: dict[str, Any], known: set[str], source: str) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
            raise ConfigError(f"{source}: unknown key {key!r}; {hint}")


def _table(cls: type[Any], raw: dict[str, Any], source: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)} - {"policy"}
    _check_keys(raw, known, source)
    return cls(**{k: _value(cls, k, v, source) for k, v in raw.items()})


def _value(cls: type[Any], key: str, value: Any, source: str) -> Any:
    tp = get_type_hints(cls)[key]
    try:
        return _coerce(tp, value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {key} = {value!r} {exc}") from None


def _coerce(tp: Any, value: Any) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return _coerce(args[0], value)
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError("must be an array")
        args = get_args(tp)
        if args and args[-1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        if len(value) != len(args):
            raise TypeError(f"must have {len(args)} items")
        return tuple(_coerce(a, v) for a, v in zip(args, value, strict=True))
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError("must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("must be a whole number")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError("must be a string")
        return value
    return typing.cast(Any, value)
