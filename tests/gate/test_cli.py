"""``workbench gate`` in-process: exit codes 0 pass, 1 fail, 2 bad input, 4 inconclusive,
70 internal error (one line and a log file), 130 Ctrl-C; outputs written."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.cli import main

PASSING = "max_accuracy_drop = 0.02\nmin_samples = 100\nmin_speedup = 1.5\n"


def _policy(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gate.toml"
    p.write_text(text)
    return p


def test_pass_exits_0_and_writes_outputs(make_paired, tmp_path, capsys):
    run = make_paired(n=2000, n_b=5, n_c=5)
    out = tmp_path / "out"
    code = main(
        [
            "gate",
            "--baseline",
            f"{run}/base",
            "--candidate",
            f"{run}/cand",
            "--policy",
            str(_policy(tmp_path, PASSING)),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("cand accuracy 0.00 pts vs base, 95% CI [") for line in lines)
    assert lines[-1].startswith("gate PASS")
    assert {p.name for p in out.iterdir()} == {"gate.json", "gate.md", "gate-junit.xml"}


def test_fail_exits_1_and_defaults_to_the_candidate_run(make_paired, tmp_path, capsys):
    run = make_paired(n=1000, n_b=40, n_c=5)
    code = main(
        [
            "gate",
            "--baseline",
            f"{run}/base",
            "--candidate",
            f"{run}/cand/",
            "--policy",
            str(_policy(tmp_path, PASSING)),
        ]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert "→ FAIL" in captured.out
    assert "error:" not in captured.err  # a failing gate is a verdict, not an error
    last = captured.out.strip().splitlines()[-1]
    assert last.startswith("gate FAIL: run/cand vs run/base — cand accuracy −3.50 pts")
    assert (run / "gate.json").is_file() and (run / "gate-junit.xml").is_file()


@pytest.mark.parametrize(
    ("args", "policy", "message"),
    [
        (["{run}/base", "{run}/cand"], "max_acuracy_drop = 0.01\n", "did you mean"),
        (["{run}/base", "{run}/nope"], PASSING, "has no build 'nope'"),
        (["{run}/base", "cand"], PASSING, "must be <run dir>/<build name>"),
        (["{tmp}/missing/base", "{run}/cand"], PASSING, "is not a run directory"),
    ],
)
def test_bad_input_exits_2(make_paired, tmp_path, capsys, args, policy, message):
    run = make_paired()
    base, cand = (a.format(run=run, tmp=tmp_path) for a in args)
    code = main(
        [
            "gate",
            "--baseline",
            base,
            "--candidate",
            cand,
            "--policy",
            str(_policy(tmp_path, policy)),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1  # one line, no traceback


def test_cross_device_flag(make_paired, tmp_path):
    a = make_paired(name="a", cpu="Intel Xeon")
    b = make_paired(name="b", cpu="AMD EPYC")
    pol = str(_policy(tmp_path, "min_speedup = 1.5\n"))
    argv = ["gate", "--baseline", f"{a}/base", "--candidate", f"{b}/cand", "--policy", pol]
    assert main(argv) == 1
    assert main([*argv, "--allow-cross-device"]) == 0


def test_gate_refreshes_an_existing_report(make_paired, tmp_path):
    from workbench.report import render_report

    run = make_paired(n=200)
    html = render_report(run)
    assert "No gate decision" in html.read_text()
    pol = str(_policy(tmp_path, "max_p99_ms = 100\n"))
    assert (
        main(["gate", "--baseline", f"{run}/base", "--candidate", f"{run}/cand", "--policy", pol])
        == 0
    )
    assert "Gate PASSED" in html.read_text()


def test_inconclusive_exits_4_with_what_would_settle_it(make_paired, tmp_path, capsys):
    run = make_paired(n=239, n_b=3, n_c=0)  # −1.26 pts, CI straddles the 1-point limit
    pol = _policy(tmp_path, "max_accuracy_drop = 0.01\nmin_samples = 100\n")
    code = main(["gate", "--baseline", f"{run}/base", "--candidate", f"{run}/cand",
                 "--policy", str(pol)])  # fmt: skip
    assert code == 4
    captured = capsys.readouterr()
    last = captured.out.strip().splitlines()[-1]
    assert last.startswith("gate INCONCLUSIVE: ") and "labelled rows" in last
    assert captured.err == ""
    assert '"verdict": "INCONCLUSIVE"' in (run / "gate.json").read_text()


def _raise(exc: BaseException):
    def boom(*args, **kwargs):
        raise exc

    return boom


def test_unexpected_exception_exits_70_with_one_line_and_a_log(
    make_paired, tmp_path, capsys, monkeypatch
):
    import workbench.errors
    import workbench.gate

    monkeypatch.setattr(workbench.errors, "_output_dir", [])
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(workbench.gate, "evaluate_gate", _raise(RuntimeError("boom\nsecond")))
    run = make_paired(n=300)
    code = main(["gate", "--baseline", f"{run}/base", "--candidate", f"{run}/cand",
                 "--policy", str(_policy(tmp_path, PASSING))])  # fmt: skip
    assert code == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("internal error: RuntimeError: boom second;")
    log = Path(err.strip().rsplit("details in ", 1)[1])
    assert log.parent == tmp_path / "cache" / "logs"
    assert "Traceback" in log.read_text() and "RuntimeError: boom" in log.read_text()


def test_internal_error_log_goes_into_the_run_folder(make_paired, tmp_path, capsys, monkeypatch):
    import workbench.errors
    import workbench.gate

    def stage(*args, **kwargs):
        workbench.errors.note_output_dir(tmp_path / "myrun")
        (tmp_path / "myrun").mkdir()
        raise KeyError("missing")

    monkeypatch.setattr(workbench.errors, "_output_dir", [])
    monkeypatch.setattr(workbench.gate, "evaluate_gate", stage)
    run = make_paired(n=300)
    code = main(["gate", "--baseline", f"{run}/base", "--candidate", f"{run}/cand",
                 "--policy", str(_policy(tmp_path, PASSING))])  # fmt: skip
    assert code == 70
    err = capsys.readouterr().err
    log = Path(err.strip().rsplit("details in ", 1)[1])
    assert log.parent == tmp_path / "myrun" and "KeyError" in log.read_text()


def test_ctrl_c_still_exits_130(make_paired, tmp_path, monkeypatch):
    import workbench.gate

    monkeypatch.setattr(workbench.gate, "evaluate_gate", _raise(KeyboardInterrupt()))
    run = make_paired(n=300)
    code = main(["gate", "--baseline", f"{run}/base", "--candidate", f"{run}/cand",
                 "--policy", str(_policy(tmp_path, PASSING))])  # fmt: skip
    assert code == 130


def test_report_shows_the_same_inconclusive_verdict_and_warnings(make_paired, tmp_path):
    import json

    from workbench.report import render_report

    run = make_paired(n=239, n_b=3, n_c=0)
    data = json.loads((run / "run.json").read_text())
    lat = data["builds"][1]["latency"][0]
    lat["samples_ms"] = [x * (1.5 if i >= 100 else 1.0) for i, x in enumerate(lat["samples_ms"])]
    (run / "run.json").write_text(json.dumps(data))
    html = render_report(run)
    pol = str(_policy(tmp_path, "max_accuracy_drop = 0.01\nmin_samples = 100\nmin_speedup = 1.2\n"))
    argv = ["gate", "--baseline", f"{run}/base", "--candidate", f"{run}/cand", "--policy", pol]
    assert main(argv) == 4
    text = html.read_text()
    assert "Gate INCONCLUSIVE" in text and 'data-verdict="inconclusive"' in text
    assert 'id="gate-warnings"' in text and "load changed while timing" in text
    assert "labelled rows at the observed disagreement would settle it" in text
