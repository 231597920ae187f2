"""Does the speed rule's verdict hold on a busy machine? Paired timing under background load.

The shipped demo's speed rule (its gated INT8 build vs ONNX Runtime FP32 at the gate's shape,
limit from the shipped policy; the static build until 2026-12-05, when
results/verdict_stability.json was measured) is timed paired and interleaved ``--repeats``
times on the quiet machine, then as often with 2 and with 4 busy background processes
(bounded, self-stopping CPU loops this script starts and kills). The claim checked: every
loaded repeat's speed-up is within ±15 % of the quiet median, or the rule says INCONCLUSIVE;
never PASS in one repeat and FAIL in another. Prints a table and writes JSON (machine, load,
per-repeat ratio/CI/verdict).

    python benchmarks/verdict_stability.py [--repeats 3] [--loads 0,2,4] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from workbench.evaluate.paired import PairedConfig, PairedTarget, measure_paired
from workbench.gate.rules import speed_verdict
from workbench.results.gate import FAIL, INCONCLUSIVE, PASS
from workbench.results.serde import to_dict

RESULTS = Path(__file__).parent / "results"
TOLERANCE = 0.15  # a loaded repeat's speed-up within ±15 % of the quiet median
BUSY_LOOP = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end:\n    pass\n"


@dataclass(frozen=True)
class SpeedRule:
    """The pair the speed rule judges, its shape and its limit."""

    baseline: PairedTarget
    candidate: PairedTarget
    shape: tuple[int, int]
    limit: float
    threads: int


def demo_rule(work_dir: Path) -> SpeedRule:
    """The shipped demo's gated pair, built (or reused from the cache) through the engine's
    own functions: Workspace, calibration, build requests, the backend registry."""
    from workbench.backends.registry import get_backend
    from workbench.experiment.builds import plan_builds
    from workbench.experiment.engine import build_request
    from workbench.experiment.measure import gated_pairs
    from workbench.experiment.spec import load_experiment, shipped_experiment
    from workbench.experiment.workspace import Workspace

    exp = load_experiment(shipped_experiment("demo"))
    exp = replace(exp, calibration=replace(exp.calibration, compare=()))
    base, cand, shape = gated_pairs(exp)[0]
    ws = Workspace.from_experiment(exp)
    calib = ws.calibrate(work_dir, str(work_dir / "calibration_sets"), compare=False)
    specs = {b.name: b for b in plan_builds(exp, skip_unavailable=True)[0]}
    targets = []
    for name in (base, cand):
        req = build_request(ws, specs[name], calib)
        targets.append(PairedTarget(req, get_backend(req.backend).build(req, calib.feeds())))
    assert exp.gate.policy is not None and exp.gate.policy.min_speedup is not None
    return SpeedRule(*targets, shape, exp.gate.policy.min_speedup, exp.evaluate.threads)


@contextmanager
def busy(n: int, max_seconds: float = 900) -> Iterator[list[subprocess.Popen]]:
    """``n`` CPU-bound loops that stop by themselves after ``max_seconds``; killed on exit."""
    procs = [
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(s=max_seconds)]) for _ in range(n)
    ]
    try:
        time.sleep(1.0 if n else 0.0)  # let the scheduler see them
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def run_benchmark(
    rule: SpeedRule,
    repeats: int,
    loads: Sequence[int],
    cfg: PairedConfig,
    on_row: Callable[[list[dict]], None] | None = None,
) -> dict[str, object]:
    """Time the rule ``repeats`` times per load level; rows, the quiet median and the claim.
    ``on_row`` sees the rows so far after each repeat (to save partial results)."""
    rows: list[dict] = []
    for load in loads:
        with busy(load):
            for r in range(repeats):
                la0 = os.getloadavg()[0]
                sp = measure_paired(rule.baseline, rule.candidate, rule.shape, rule.threads, cfg)
                status, settle = speed_verdict(sp, rule.limit)
                rows.append(
                    {
                        "busy_processes": load,
                        "repeat": r,
                        "ratio": sp.ratio,
                        "ci_low": sp.ci_low,
                        "ci_high": sp.ci_high,
                        "verdict": status,
                        "settle": settle,
                        "loadavg_1min": [la0, os.getloadavg()[0]],
                        "record": to_dict(replace(sp, blocks=[])),
                    }
                )
                if on_row is not None:
                    on_row(rows)
    return {"rows": rows, **judge_claim(rows)}


def judge_claim(rows: Sequence[dict]) -> dict[str, object]:
    """The claim: loaded repeats within ±15 % of the quiet median or INCONCLUSIVE; never both
    a PASS and a FAIL."""
    quiet = [x["ratio"] for x in rows if x["busy_processes"] == 0 and x["ratio"] > 0]
    median = statistics.median(quiet) if quiet else None  # None: no quiet reference
    bad = [
        x
        for x in rows
        if x["busy_processes"] > 0
        and x["verdict"] != INCONCLUSIVE
        and (median is None or not abs(x["ratio"] / median - 1) <= TOLERANCE)
    ]
    verdicts = {x["verdict"] for x in rows}
    flip = PASS in verdicts and FAIL in verdicts
    return {
        "quiet_median": median,
        "tolerance": TOLERANCE,
        "outside_tolerance": [(x["busy_processes"], x["repeat"]) for x in bad],
        "pass_and_fail": flip,
        "claim_holds": bool(quiet) and not bad and not flip,
    }


def _change(ratio: float, median: float | None) -> str:
    """The speed-up against the quiet median ("—" when either is missing)."""
    return f"{(ratio / median - 1) * 100:+.0f}%" if ratio > 0 and median else "—"


def table(result: dict, rule: SpeedRule) -> str:
    """A Markdown table of the repeats."""
    lines = [
        f"limit ×{rule.limit:.2f}, batch {rule.shape[0]} × seq {rule.shape[1]}, "
        f"{rule.candidate.request.name} vs {rule.baseline.request.name}",
        "",
        "| busy processes | repeat | speed-up | 95% CI | vs quiet median | other runnable "
        "| starved blocks | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    m = result["quiet_median"]
    for x in result["rows"]:
        rec = x["record"]
        clean = rec["blocks_used"] > 0
        speed = f"×{x['ratio']:.2f}" if clean else "—"
        ci = f"[×{x['ci_low']:.2f}, ×{x['ci_high']:.2f}]" if clean else "no clean round"
        lines.append(
            f"| {x['busy_processes']} | {x['repeat']} | {speed} | {ci} | "
            f"{_change(x['ratio'], m)} | "
            f"{rec['load_avg']:.1f} | {rec['blocks_dropped']} | {x['verdict'].upper()} |"
        )
    lines.append("")
    median = "none (no clean quiet round)" if m is None else f"×{m:.2f}"
    lines.append(
        f"quiet median {median}; claim (loaded within ±{TOLERANCE:.0%} or INCONCLUSIVE, "
        f"never PASS and FAIL): {'holds' if result['claim_holds'] else 'DOES NOT HOLD'}"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--loads", default="0,2,4", help="busy background processes per level")
    ap.add_argument("--rounds", type=int, default=PairedConfig.rounds)
    ap.add_argument("--block-ms", type=float, default=PairedConfig.block_ms)
    ap.add_argument("--out", default=str(RESULTS / "verdict_stability.json"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout still kills the loops
    from workbench.fileio import atomic_write_json
    from workbench.provenance import collect_provenance

    prov = collect_provenance(seeds={"paired": 0})
    cfg = PairedConfig(rounds=args.rounds, block_ms=args.block_ms)

    def save(result: dict, text: str) -> None:
        head = {"cpu": prov.cpu, "cores": prov.cpu_count, "created_utc": prov.created_utc}
        pair = [rule.baseline.request.name, rule.candidate.request.name]
        atomic_write_json(
            args.out,
            {"machine": head, "pair": pair, "shape": list(rule.shape), "limit": rule.limit,
             "config": to_dict(cfg), **result, "table": text},
        )  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        rule = demo_rule(Path(tmp))
        loads = [int(x) for x in args.loads.split(",")]
        partial = lambda rows: save({"rows": rows, "partial": True, **judge_claim(rows)}, "")  # noqa: E731
        result = run_benchmark(rule, args.repeats, loads, cfg, partial)
    text = table(result, rule)
    print(f"{prov.cpu} ×{prov.cpu_count} cores\n\n{text}")
    save({**result, "partial": False}, text)


if __name__ == "__main__":
    main()
