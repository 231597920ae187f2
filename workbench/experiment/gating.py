"""Gate a run's candidates against its baseline with the experiment's policy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import ConfigError
from workbench.results.spec import Experiment

if TYPE_CHECKING:
    from workbench.results.gate import GateDecision


def gate_run(run_dir: Path, exp: Experiment) -> list[GateDecision]:
    """Gate every candidate; writes gate.json/gate.md/gate-junit.xml (the first candidate's
    under those names, further candidates under ``gate-<name>.*``). Returns the decisions."""
    from workbench.gate import evaluate_gate, write_gate_outputs

    g = exp.gate
    if g.policy is None:
        raise ConfigError("no gate policy configured; set [gate] policy")
    decisions = []
    for i, cand in enumerate(g.candidates):
        decision = evaluate_gate(run_dir, g.baseline, run_dir, cand, g.policy)
        out = run_dir if i == 0 else run_dir / f"gate-{cand}"
        write_gate_outputs(decision, out)
        decisions.append(decision)
    return decisions


@dataclass(frozen=True)
class PairGate:
    """``workbench gate``: one build of one run against one of another, under a policy file."""

    baseline: str  # <run dir>/<build name>, e.g. reports/r1/ort-fp32
    candidate: str
    policy_file: Path
    out_dir: Path | None = None  # where gate.json/.md/-junit.xml go (None: the candidate's run)
    allow_cross_device: bool = False
    allow_same: bool = False
    disagreement_labels: Path | None = None  # the candidate run's filled-in disagreements.csv


def gate_pair(req: PairGate) -> tuple[GateDecision, dict[str, Path]]:
    """Check the folders, judge, write the gate files and refresh the run's report.html."""
    from workbench.experiment.rundir import check_not_busy
    from workbench.fileio import check_writable_dir
    from workbench.gate import evaluate_gate, load_policy, write_gate_outputs

    policy = load_policy(req.policy_file)
    base_dir, base_build = split_ref(req.baseline, "--baseline")
    cand_dir, cand_build = split_ref(req.candidate, "--candidate")
    out_dir = req.out_dir or cand_dir
    check_writable_dir(out_dir, "--out folder", "pass --out a writable folder")
    for path in {base_dir, cand_dir, Path(out_dir)}:
        check_not_busy(path)
    if req.disagreement_labels is not None:
        from workbench.experiment.traffic import apply_disagreement_labels

        apply_disagreement_labels(cand_dir, req.disagreement_labels)
    decision = evaluate_gate(
        base_dir,
        base_build,
        cand_dir,
        cand_build,
        policy,
        allow_cross_device=req.allow_cross_device,
        allow_same=req.allow_same,
    )
    paths = write_gate_outputs(decision, out_dir)
    _refresh_report(Path(out_dir))
    return decision, paths


def split_ref(ref: str, flag: str) -> tuple[Path, str]:
    """``reports/r1/ort-fp32`` -> (Path("reports/r1"), "ort-fp32")."""
    run_dir, sep, build = ref.rstrip("/").rpartition("/")
    if not sep or not run_dir or not build:
        raise ConfigError(
            f"{flag} {ref!r} must be <run dir>/<build name>, e.g. reports/20250101-abc/ort-fp32"
        )
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag}: {path} is a file, not a run directory; fix the path")
    if not (path / "run.json").is_file():
        raise ConfigError(
            f"{flag}: {path} is not a run directory (no run.json); run `workbench run` or "
            "`workbench demo` first, or fix the path"
        )
    return path, build


def _refresh_report(run_dir: Path) -> None:
    """Re-render the run's existing report.html so it opens with the new verdict."""
    if (run_dir / "run.json").is_file() and (run_dir / "report.html").is_file():
        from workbench.report.render import render_report

        render_report(run_dir)
