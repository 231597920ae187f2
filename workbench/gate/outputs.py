"""Gate outputs: ``gate.json`` (the record), ``gate.md`` (a PR comment), ``gate-junit.xml`` (CI).

All three carry the decision's one verdict (PASS / FAIL / INCONCLUSIVE), its reasons and its
warnings. In JUnit an inconclusive check is ``<skipped message="INCONCLUSIVE: …">``: CI systems
show skipped tests with their message and do not count them as failures, while the command's
exit code 4 still stops the pipeline (see docs/verdicts.md).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from workbench.fileio import atomic_write_bytes, atomic_write_text
from workbench.results.gate import ERROR, FAIL, GATE_FILE, INCONCLUSIVE, PASS, GateDecision
from workbench.results.records import save_record

MARKDOWN_FILE = "gate.md"
JUNIT_FILE = "gate-junit.xml"
_STATUS = {
    PASS: "✅ pass",
    FAIL: "❌ fail",
    INCONCLUSIVE: "❔ inconclusive",
    ERROR: "⚠️ not evaluated",
}
_VERDICT = {"PASS": "✅ PASS", "FAIL": "❌ FAIL", "INCONCLUSIVE": "❔ INCONCLUSIVE"}
_WHY = {
    "FAIL": "**Why it failed**",
    "INCONCLUSIVE": "**Why it cannot tell, and what would settle it**",
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
    verdict = _VERDICT[decision.verdict]
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
        lines += ["", _WHY.get(decision.verdict, "**Checks that did not pass**"), ""]
        lines += [f"- {_md_cell(r)}" for r in decision.reasons]
    if decision.warnings:
        lines += ["", "**Warnings** (they do not change the verdict)", ""]
        lines += [f"- ⚠️ {_md_cell(w)}" for w in decision.warnings]
    return "\n".join(lines) + "\n"


def to_junit(decision: GateDecision) -> bytes:
    """JUnit XML: one test case per check (fail → <failure>, not evaluated → <error>,
    inconclusive → <skipped> with what would settle it); the verdict and the warnings are
    suite properties and the suite's system-out."""
    failures = sum(c.status == FAIL for c in decision.checks)
    errors = sum(c.status == ERROR for c in decision.checks)
    skipped = sum(c.status == INCONCLUSIVE for c in decision.checks)
    suites = ET.Element("testsuites", name="workbench-gate")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"gate {decision.candidate} vs {decision.baseline}",
        tests=str(len(decision.checks)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="verdict", value=decision.verdict)
    for w in decision.warnings:
        ET.SubElement(props, "property", name="warning", value=w)
    for c in decision.checks:
        case = ET.SubElement(suite, "testcase", classname="workbench.gate", name=c.name)
        if c.status == FAIL:
            ET.SubElement(case, "failure", message=c.message, type="GateFailed").text = c.message
        elif c.status == ERROR:
            ET.SubElement(case, "error", message=c.message, type="NotEvaluated").text = c.message
        elif c.status == INCONCLUSIVE:
            ET.SubElement(case, "skipped", message=f"INCONCLUSIVE: {c.message}").text = c.message
        else:
            ET.SubElement(case, "system-out").text = c.message
    out = [decision.summary] + [f"warning: {w}" for w in decision.warnings]
    ET.SubElement(suite, "system-out").text = "\n".join(out)
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
