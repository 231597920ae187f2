"""Gate outputs: ``gate.json`` (the record), ``gate.md`` (a PR comment), ``gate-junit.xml`` (CI)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from workbench.fileio import atomic_write_bytes, atomic_write_text
from workbench.gate.decision import ERROR, FAIL, GATE_FILE, GateDecision
from workbench.results.records import save_record

MARKDOWN_FILE = "gate.md"
JUNIT_FILE = "gate-junit.xml"
_STATUS = {
    "pass": "✅ pass",
    FAIL: "❌ fail",
    ERROR: "⚠️ not evaluated",
    "inconclusive": "❔ inconclusive",
}


def _md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipes, newlines or raw HTML)."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("|", "\\|")
        .replace("\n", " ")
    )


def to_markdown(decision: GateDecision) -> str:
    """A Markdown summary of the decision, for a pull-request comment."""
    verdict = "✅ PASS" if decision.passed else "❌ FAIL"
    p = decision.policy
    lines = [
        f"## Gate: {verdict}",
        "",
        f"Candidate `{_md_cell(decision.candidate)}` vs baseline `{_md_cell(decision.baseline)}` "
        f"· metric {p.metric}, {p.confidence * 100:g}% confidence, "
        f"{p.bootstrap_resamples} paired bootstrap resamples (seed {p.seed})",
        "",
        "| Check | Result | Detail |",
        "|---|---|---|",
    ]
    for c in decision.checks:
        lines.append(f"| {_md_cell(c.name)} | {_STATUS[c.status]} | {_md_cell(c.message)} |")
    if decision.reasons:
        lines += ["", "**Why it failed**", ""]
        lines += [f"- {_md_cell(r)}" for r in decision.reasons]
    return "\n".join(lines) + "\n"


def to_junit(decision: GateDecision) -> bytes:
    """JUnit XML: one test case per check (fail → <failure>, not evaluated → <error>)."""
    failures = sum(c.status == FAIL for c in decision.checks)
    errors = sum(c.status == ERROR for c in decision.checks)
    suites = ET.Element("testsuites", name="workbench-gate")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"gate {decision.candidate} vs {decision.baseline}",
        tests=str(len(decision.checks)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
    )
    for c in decision.checks:
        case = ET.SubElement(suite, "testcase", classname="workbench.gate", name=c.name)
        if c.status == FAIL:
            ET.SubElement(case, "failure", message=c.message, type="GateFailed").text = c.message
        elif c.status == ERROR:
            ET.SubElement(case, "error", message=c.message, type="NotEvaluated").text = c.message
        else:
            ET.SubElement(case, "system-out").text = c.message
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def write_gate_outputs(decision: GateDecision, out_dir: str | Path) -> dict[str, Path]:
    """Write gate.json, gate.md and gate-junit.xml into ``out_dir`` (atomically)."""
    out = Path(out_dir)
    return {
        "json": save_record(decision, out / GATE_FILE),
        "markdown": atomic_write_text(out / MARKDOWN_FILE, to_markdown(decision)),
        "junit": atomic_write_bytes(out / JUNIT_FILE, to_junit(decision)),
    }
