"""The gate's decision record (``gate.json``): one verdict, the checks behind it, and its reader.

The gate (``workbench.gate``) forms it; the report and the run story read it from here, so
neither needs the judge. A decision records the candidate's test-set hash, so a gate.json left
next to a different run's record is reported as stale instead of shown as its verdict.

Example::

    from workbench.results.gate import GATE_FILE, load_decision
    d = load_decision(run_dir / GATE_FILE)
    d.verdict, d.reasons
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import ResultsError
from workbench.results.policy import GatePolicy
from workbench.results.records import RUN_FILE, load_run
from workbench.results.serde import from_dict

GATE_SCHEMA_VERSION = 3  # 2: test_set_sha256; 3: verdict (three-way), warnings
GATE_FILE = "gate.json"
VERDICTS = ("PASS", "FAIL", "INCONCLUSIVE")
PASS, FAIL, INCONCLUSIVE, ERROR = "pass", "fail", "inconclusive", "error"  # a check's status
STATUSES = (PASS, FAIL, INCONCLUSIVE, ERROR)


@dataclass(frozen=True)
class GateCheck:
    """One rule's outcome; ``error`` means it could not be evaluated (counts as a failure);
    ``inconclusive`` carries what would settle it in ``details["settle"]``."""

    name: str
    status: str  # "pass" | "fail" | "inconclusive" | "error"
    message: str
    observed: float | None
    limit: float | None
    details: dict[str, Any]

    @property
    def passed(self) -> bool:
        return self.status == PASS


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict: FAIL if any check fails (or could not be evaluated), else
    INCONCLUSIVE if any check cannot tell, else PASS; ``passed`` is ``verdict == "PASS"``.
    ``warnings`` are notes that do not change the verdict (timing noise, machine contention)."""

    schema_version: int
    passed: bool
    verdict: str  # "PASS" | "FAIL" | "INCONCLUSIVE"
    baseline: str  # "<run_id>/<build>"
    candidate: str
    baseline_run_dir: str
    candidate_run_dir: str
    test_set_sha256: str  # the candidate's: a verdict belongs to this test set only
    allow_cross_device: bool
    policy: GatePolicy
    checks: list[GateCheck]
    reasons: list[str]  # the messages of every check that did not pass
    warnings: list[str]

    @property
    def exit_code(self) -> int:
        """0 PASS, 1 FAIL, 4 INCONCLUSIVE (the CLI's codes)."""
        return {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 4}[self.verdict]

    @property
    def summary(self) -> str:
        """One line: the verdict, the candidate and the first reason (the terminal's last line)."""
        head = f"gate {self.verdict}: {self.candidate} vs {self.baseline}"
        return head if not self.reasons else f"{head} — {self.reasons[0]}"


def load_decision(path: str | Path) -> GateDecision:
    """Read a gate.json; ResultsError if absent, corrupt, of another schema, or stale.

    Stale: the gate.json sits in a run directory whose run.json has another test set
    (a verdict about other results must never be shown as this run's).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ResultsError(f"{p} does not exist; run `workbench gate` first") from exc
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{p} is not valid JSON ({exc}); re-run `workbench gate`") from exc
    if isinstance(data, dict) and data.get("schema_version") == 2:
        data = _upgrade_v2(data)
    if not isinstance(data, dict) or data.get("schema_version") != GATE_SCHEMA_VERSION:
        raise ResultsError(
            f"{p} is not a gate decision of schema {GATE_SCHEMA_VERSION}; re-run `workbench gate`"
        )
    decision = from_dict(GateDecision, data)
    _check_not_stale(decision, p)
    return decision


def _upgrade_v2(data: dict) -> dict:
    """A schema-2 gate.json knew only pass/fail: its verdict is that, with no warnings."""
    verdict = "PASS" if data.get("passed") is True else "FAIL"
    return {**data, "schema_version": GATE_SCHEMA_VERSION, "verdict": verdict, "warnings": []}


def _check_not_stale(decision: GateDecision, path: Path) -> None:
    run_file = path.parent / RUN_FILE
    if not run_file.is_file():
        return  # written with --out elsewhere: nothing to compare with
    run = load_run(run_file)
    if run.test_set_sha256 != decision.test_set_sha256:
        raise ResultsError(
            f"{path} is stale: it gated test set {decision.test_set_sha256[:12]}, this run has "
            f"{run.test_set_sha256[:12]}; re-run `workbench gate` for this run"
        )
