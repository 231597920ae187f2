"""Calibration-bias experiment: calibrate on the shortest 10% of sentences vs an unbiased set.

Builds two calibration sets of the same N from the Rotten Tomatoes calibration pool: a stratified
one, and one drawn only from the shortest 10% (by token count). Checks both against the test split
(representativeness), calibrates each (workbench engine, static Q/DQ), and compares INT8 accuracy
and agreement with FP32 on all, short (<= p25) and long (>= p75) test inputs, with a paired
bootstrap 95% CI of the biased-minus-unbiased accuracy difference. Prints a table, writes JSON.

    python benchmarks/calibration_bias.py                       # default prepared classifier
    python benchmarks/calibration_bias.py --onnx model.onnx --model-dir encoder/ --n 128
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    from _results import add_overwrite_flag, load_average, save_result
except ImportError:  # imported by the tests as benchmarks.<name>
    from benchmarks._results import add_overwrite_flag, load_average, save_result


def _bootstrap_diff(a: np.ndarray, b: np.ndarray, reps: int = 2000, seed: int = 0) -> list[float]:
    """Paired bootstrap 95% CI of mean(a) - mean(b) (a, b: per-sample correctness)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(reps, len(a)))
    diffs = a[idx].mean(axis=1) - b[idx].mean(axis=1)
    return [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]


def _model(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from workbench.data.tokenize import TextTokenizer

    if args.onnx:
        if not args.model_dir:
            sys.exit("--onnx needs --model-dir (the folder with the model's tokenizer.json)")
        return args.onnx, TextTokenizer.from_model_dir(args.model_dir, args.max_length)
    from workbench.experiment.calibset_sweep import default_model

    return default_model(None, "text", "label")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", help="FP32 ONNX classifier (default: the prepared default model)")
    p.add_argument("--model-dir", help="folder with the model's tokenizer.json")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--n", type=int, default=128, help="calibration samples per set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="entropy,max", help="calibration methods to compare")
    p.add_argument("--out", default="reports/calibration_bias.json")
    add_overwrite_flag(p)
    args = p.parse_args(argv)
    before = load_average()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from workbench.backends.onnxruntime.runner import OrtRunner, open_ort_runner
    from workbench.calibration.qdq import write_qdq_model
    from workbench.calibration.table import calibrate_methods
    from workbench.data.calibset import PoolFilters, build_calibration_set
    from workbench.data.representativeness import TextProfile
    from workbench.data.sources import default_pool
    from workbench.evaluate.accuracy import predict_logits

    onnx_path, tok = _model(args)
    pool, test = default_pool()
    assert test is not None
    texts, labels = list(test["text"]), np.asarray(test["label"])
    test_len = tok.lengths(texts)
    target = TextProfile.from_texts(texts, tok, labels)
    pool_len = tok.lengths(pool.dataset["text"])
    cut = int(np.percentile(pool_len, 10))
    p25, p75 = np.percentile(test_len, [25, 75])
    subsets = {"all": np.ones(len(texts), bool), "short": test_len <= p25, "long": test_len >= p75}
    with OrtRunner(onnx_path, name="fp32") as r:
        fp32 = predict_logits(r, texts, tok).argmax(axis=1)
    out: dict = {
        "model": str(onnx_path),
        "n": args.n,
        "seed": args.seed,
        "shortest_10pct_max_tokens": cut,
        "test": {"n": len(texts), "p25": float(p25), "p75": float(p75)},
        "fp32": {k: float((fp32 == labels)[m].mean()) for k, m in subsets.items()},
        "sets": {},
    }
    correct: dict[str, dict[str, np.ndarray]] = {}
    amax: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, filters in (("unbiased", PoolFilters()), ("biased", PoolFilters(max_tokens=cut))):
            cs = build_calibration_set(
                pool.dataset,
                args.n,
                tok,
                seed=args.seed,
                root=Path(tmp) / "sets",
                source_path=pool.source_path,
                source_sha256=pool.source_sha256,
                target=target,
                target_name="test split",
                filters=filters,
            )
            rep = cs.manifest.representativeness
            assert rep is not None
            tables, _ = calibrate_methods(
                onnx_path,
                cs.batches(tok, 16),
                args.methods.split(","),
                cs.manifest_sha256,
                open_runner=open_ort_runner,
            )
            entry = {
                "verdict": rep.verdict,
                "length_psi": rep.length_psi,
                "ks": rep.length_ks_statistic,
                "p50_p90": [rep.calibration_lengths.p50, rep.calibration_lengths.p90],
                "warnings": rep.warnings,
                "methods": {},
            }
            for method, table in tables.items():
                amax.setdefault(method, {})[kind] = dict(table.amax)
                qdq = Path(tmp) / f"{kind}-{method}.onnx"
                write_qdq_model(onnx_path, table, qdq)
                with OrtRunner(qdq, name=f"{kind}-{method}", precision="int8-static") as r:
                    pred = predict_logits(r, texts, tok).argmax(axis=1)
                qdq.unlink()
                ok = pred == labels
                correct.setdefault(method, {})[kind] = ok
                entry["methods"][method] = {
                    k: {
                        "accuracy": float(ok[m].mean()),
                        "agreement": float((pred == fp32)[m].mean()),
                    }
                    for k, m in subsets.items()
                }
            out["sets"][kind] = entry
    out["biased_minus_unbiased"] = {
        method: {
            k: {
                "accuracy_diff": float(c["biased"][m].mean() - c["unbiased"][m].mean()),
                "ci95": _bootstrap_diff(
                    c["biased"][m].astype(float), c["unbiased"][m].astype(float)
                ),
                "n": int(m.sum()),
            }
            for k, m in subsets.items()
        }
        for method, c in correct.items()
    }
    out["amax_ratio_biased_over_unbiased"] = {}
    for method, by_kind in amax.items():
        names = sorted(set(by_kind["biased"]) & set(by_kind["unbiased"]))
        ratio = np.array([by_kind["biased"][n] / max(by_kind["unbiased"][n], 1e-30) for n in names])
        out["amax_ratio_biased_over_unbiased"][method] = {
            "tensors": len(names),
            "min": float(ratio.min()),
            "median": float(np.median(ratio)),
            "max": float(ratio.max()),
            "share_below_0.9": float((ratio < 0.9).mean()),
        }
    _print(out)
    save_result(args.out, out, before, force=args.force_overwrite)
    print(f"wrote {args.out}")
    return 0


def _print(out: dict) -> None:
    print(
        f"model {out['model']}; N={out['n']}; biased = shortest 10% (<= "
        f"{out['shortest_10pct_max_tokens']} tokens); test n={out['test']['n']}, "
        f"short <= {out['test']['p25']:.0f}, long >= {out['test']['p75']:.0f} tokens"
    )
    for kind, e in out["sets"].items():
        print(
            f"  {kind:9s} verdict={e['verdict']:<20s} PSI={e['length_psi']:.3f} "
            f"p50/p90={e['p50_p90'][0]:.0f}/{e['p50_p90'][1]:.0f}"
        )
    print(f"{'build':22s} {'acc all':>8s} {'acc short':>9s} {'acc long':>8s} {'agree long':>10s}")
    f = out["fp32"]
    print(f"{'fp32':22s} {f['all']:8.4f} {f['short']:9.4f} {f['long']:8.4f} {'':>10s}")
    for kind, e in out["sets"].items():
        for method, m in e["methods"].items():
            print(
                f"{kind + ' ' + method:22s} {m['all']['accuracy']:8.4f} "
                f"{m['short']['accuracy']:9.4f} {m['long']['accuracy']:8.4f} "
                f"{m['long']['agreement']:10.4f}"
            )
    for method, r in out["amax_ratio_biased_over_unbiased"].items():
        print(
            f"amax biased/unbiased ({method}): median {r['median']:.3f}, min {r['min']:.3f}, "
            f"max {r['max']:.3f}, {r['share_below_0.9']:.0%} of {r['tensors']} tensors < 0.9"
        )
    for method, d in out["biased_minus_unbiased"].items():
        long = d["long"]
        print(
            f"biased - unbiased ({method}), long inputs: {long['accuracy_diff']:+.4f} "
            f"95% CI [{long['ci95'][0]:+.4f}, {long['ci95'][1]:+.4f}] (n={long['n']})"
        )


if __name__ == "__main__":
    sys.exit(main())
