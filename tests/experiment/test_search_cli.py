"""``workbench search`` end to end on a user's experiment (tiny HF classifier, real texts)."""

from __future__ import annotations

import tomllib

import pytest

from workbench.cli import main
from workbench.results.records import load_record
from workbench.results.search import SEARCH_FILE, SearchRecord


def test_search_writes_a_verified_choice_and_an_exclude_the_experiment_accepts(
    user_experiment, tmp_path, capsys
):
    out = tmp_path / "search"
    args = ["search", str(user_experiment), "--quick", "--out", str(out), "--no-progress",
            "--calibration-sets", str(tmp_path / "sets"), "--methods", "max,entropy"]  # fmt: skip
    code = main(args)
    assert code in (0, 1, 4)
    rec = load_record(SearchRecord, out / SEARCH_FILE)
    assert rec.n_search + rec.n_gate == 120 and abs(rec.n_search - rec.n_gate) <= 1
    assert len(rec.ranking) == 18 and rec.ranking_kind == "proxy"
    assert {t.method for t in rec.trials if t.kind == "static"} == {"max", "entropy"}
    assert {t.per_channel for t in rec.trials} == {True, False}
    # every kind of build is a candidate: static and dynamic, plain and fused (a BERT model)
    starts = {(t.kind, t.graph) for t in rec.trials if not t.float_nodes}
    assert starts == {(k, g) for k in ("static", "dynamic") for g in ("plain", "fused")}
    assert {t.method for t in rec.trials if t.kind == "dynamic"} == {"dynamic"}
    from workbench.experiment.search_builds import available_recoveries

    n_rec = len(available_recoveries("static"))  # none + each installed recovery option
    n_dyn = len(available_recoveries("dynamic"))  # none + per-token for the worst layers
    assert len(rec.configurations) == 2 * (2 * 2 * n_rec + 2 * n_dyn)  # graphs x kinds
    if n_rec > 1:  # every recovery option was a candidate, measured
        assert {tuple(t.recovery) for t in rec.trials if t.recovery} == {
            r for k in ("static", "dynamic") for r in available_recoveries(k)[1:]
        }  # each option alone and the pairs
    assert rec.fp32_latency_ms > 0
    html = (out / "search.html").read_text(encoding="utf-8")
    assert "<script" not in html and 'class="heat"' in html
    if rec.best is None:
        assert code == 1 and "No candidate passed" in html
        return
    assert "no selection bias" in html and rec.best.method in html
    assert rec.gate_check is not None and rec.gate_check.n == rec.n_gate
    g = rec.gate_check
    assert code == {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 4}[g.verdict]
    assert g.passed == (g.verdict == "PASS")
    from workbench.experiment.spec import load_experiment

    policy = load_experiment(user_experiment).gate.policy
    if policy is not None and rec.n_gate < policy.min_samples:  # a 60-row half cannot tell
        assert g.verdict in ("INCONCLUSIVE", "FAIL")
        assert g.verdict == "FAIL" or any("more test rows" in r for r in g.reasons)
        assert g.verdict == "FAIL" or any("search halves the test split" in r for r in g.reasons)
    head = (out / "exclude.toml").read_text().splitlines()[:2]
    assert head[1].startswith(f"# gate verdict: {g.verdict} on {g.n} rows")
    assert g.verdict == "PASS" or "passed the gate" not in head[0]
    timed = [t for t in rec.trials if t.passed and t.latency_ms == t.latency_ms]
    assert rec.best.latency_ms == min(t.latency_ms for t in timed)  # the fastest passing one
    for name in rec.files:
        assert (out / name).is_file()
    toml = tomllib.loads((out / "exclude.toml").read_text())
    snippet, (build,) = toml["calibration"], toml["build"]
    assert snippet.get("method", "dynamic") == rec.best.method and snippet["exclude"] == rec.exclude
    assert build["precision"] == f"int8-{rec.best.kind}" and build["graph"] == rec.best.graph
    if build.get("recovery"):  # a [[build]] table that rebuilds the choice
        assert rec.best.kind == "dynamic" and build["recovery"] == list(rec.best.recovery)
    # the float list drops straight into the experiment file
    text = user_experiment.read_text().replace("exclude = []", f"exclude = {rec.exclude!r}")
    (tmp_path / "e.toml").write_text(text.replace("'", '"'))

    assert list(load_experiment(tmp_path / "e.toml").calibration.exclude) == rec.exclude
    printed = capsys.readouterr().out
    assert "on the gate split" in printed
    assert printed.strip().splitlines()[-1].startswith(f"gate {g.verdict}: ")


def test_search_halves_are_batched_as_the_gate_scores(user_experiment):
    """Dynamic INT8 takes one activation range per batch, so a row's prediction depends on
    its batch-mates: the search must score its halves in the gate's batches, or it picks on
    predictions the gate will not see."""
    import numpy as np

    from workbench.backends.onnxruntime.build import quantize_dynamic_int8
    from workbench.backends.onnxruntime.runner import OrtRunner
    from workbench.evaluate.accuracy import predict_logits
    from workbench.evaluate.scorer import model_logits
    from workbench.experiment.search import _splits
    from workbench.experiment.spec import load_experiment
    from workbench.experiment.workspace import Workspace

    ws = Workspace.from_experiment(load_experiment(user_experiment), quick=False)
    search, gate, _ = _splits(ws, ws.export.onnx_path)
    dyn = quantize_dynamic_int8(ws.export.onnx_path).path
    for half in (search, gate):
        assert half.rows is not None and len(half.rows) == 60
        with OrtRunner(dyn) as r:
            as_gate = predict_logits(r, [ws.texts[i] for i in half.rows], ws.tokenizer)
        np.testing.assert_array_equal(model_logits(dyn, half.feeds), as_gate)
        assert np.array_equal(half.labels, np.asarray(ws.labels)[half.rows])
    # the check can fail: in split order the same rows get other batch-mates, other logits
    order = np.sort(gate.rows)
    feeds = [ws.tokenizer.encode([ws.texts[i] for i in order[s : s + 32]]) for s in (0, 32)]
    with OrtRunner(dyn) as r:
        as_gate = predict_logits(r, [ws.texts[i] for i in order], ws.tokenizer)
    assert not np.array_equal(model_logits(dyn, feeds), as_gate)


def test_a_half_that_can_settle_every_rule_needs_a_pass(user_experiment, tmp_path):
    """With a search half of at least the policy's ``min_samples`` rows the search may pick
    only a build the judge PASSes there; when none does (60 rows cannot bring agreement's
    interval above 97 %), it judges the fastest build that failed no rule and says so."""
    import shutil

    from workbench.experiment.spec import DEFAULT_POLICY

    exp = tmp_path / "experiment.toml"
    shutil.copytree(user_experiment.parent, tmp_path, dirs_exist_ok=True)
    policy = DEFAULT_POLICY.read_text().replace("min_samples = 200", "min_samples = 50")
    (tmp_path / "gate.toml").write_text(policy)
    exp.write_text(exp.read_text().replace("[gate]\n", '[gate]\npolicy = "gate.toml"\n'))
    out = tmp_path / "search"
    args = ["search", str(exp), "--out", str(out), "--no-progress", "--kinds", "dynamic",
            "--graphs", "plain", "--no-recovery", "--max-float", "1",
            "--calibration-sets", str(tmp_path / "sets"), "--methods", "max"]  # fmt: skip
    code = main(args)
    rec = load_record(SearchRecord, out / SEARCH_FILE)
    assert rec.n_search == 60 and not any(t.passed for t in rec.trials)
    assert rec.best is not None and not rec.best.passed and rec.gate_check is not None
    assert any("no build passed every rule on the 60-row search half" in r
               for r in rec.gate_check.reasons)  # fmt: skip
    assert (
        rec.gate_check.verdict != "PASS"
        and code == {"FAIL": 1, "INCONCLUSIVE": 4}[rec.gate_check.verdict]
    )
    html = (out / "search.html").read_text(encoding="utf-8")
    assert "No build passed every rule on the search split" in html
    # --lenient (the demo's setting): a build that fails no rule there is accepted
    lenient = tmp_path / "lenient"
    main([*args[:3], str(lenient), *args[4:], "--lenient"])
    rec = load_record(SearchRecord, lenient / SEARCH_FILE)
    assert rec.best is not None and rec.best.passed
    assert not any("no build passed every rule" in r for r in rec.gate_check.reasons)
    # a time budget spent by the starts: no configuration is searched, and the record says so
    cut = tmp_path / "cut"
    main([*args[:3], str(cut), *args[4:], "--time-budget", "0.0001"])
    rec = load_record(SearchRecord, cut / SEARCH_FILE)
    assert {t.stage for t in rec.trials} == {"start"}
    assert any("time budget ran out before its search was done" in n for n in rec.not_searched)
    assert any("0.0001-minute time budget ran out" in r for r in rec.gate_check.reasons)
    html = (cut / "search.html").read_text(encoding="utf-8")
    assert "Not searched" in html and "time budget ran out before its search was done" in html


def test_search_refuses_bad_ranking(user_experiment, tmp_path):
    with pytest.raises(SystemExit):
        main(["search", str(user_experiment), "--ranking", "magic"])


def test_search_refuses_unknown_kind_or_graph_before_writing(tmp_path, capsys):
    for flag, bad, hint in (("--kinds", "statc", "static"), ("--graphs", "fsued", "fused")):
        out = tmp_path / f"s{flag}"
        code = main(["search", flag, bad, "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and f"did you mean '{hint}'" in err and "\n" not in err
        assert not out.exists()
    for bad in ("0", "-3", "nan"):
        out = tmp_path / f"budget{bad}"
        code = main(["search", "--time-budget", bad, "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "--time-budget" in err and "\n" not in err
        assert not out.exists()
