"""Scheduling overhead of a sweep on Ray vs the same cells run one after another in one process.

Both sides run the same cells through ``run_experiment`` with the content-addressed cache
already warm (one untimed pass first), so what differs is what Ray adds: starting the
local cluster, the prepare tasks, worker processes importing workbench, pickling cells
and records. CPU cells hold the node's one ``timing`` slot, so Ray runs them one at a
time too: a like-for-like comparison. Prints a table and writes JSON.

    PYTHONPATH=. python benchmarks/sweep_overhead.py [--grid 2] [--num-cpus 2]
        [--out benchmarks/results/sweep_overhead.json]

Without ``--sweep`` it writes a grid x grid sweep (calibration method x set size) over a
tiny random BERT (tests/tiny_bert.py) and 100 + 100 Rotten Tomatoes rows in a temp folder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from workbench.experiment.engine import RunOptions, run_experiment
from workbench.experiment.sweep import load_sweep
from workbench.experiment.sweep_run import SweepOptions, run_sweep
from workbench.provenance import collect_provenance

try:  # run as a script: benchmarks/ is on sys.path
    from _results import add_overwrite_flag, load_average, save_result
except ImportError:  # imported by the tests as benchmarks.<name>
    from benchmarks._results import add_overwrite_flag, load_average, save_result

METHODS = ["entropy", "max", "percentile-99.99", "mse"]
EXPERIMENT = """
name = "tiny"
[model]
path = "model"
[data]
test = "val.csv"
calibration = "calib.csv"
text_column = "sentence"
label_column = "y"
max_length = 64
[calibration]
compare = []
[evaluate]
iterations = 20
warmup = 2
shapes = [[1, 32]]
[gate]
baseline = "ort-fp32"
candidates = ["ort-int8-static"]
[[build]]
backend = "onnxruntime"
precision = "fp32"
[[build]]
backend = "onnxruntime"
precision = "int8-static"
"""


def tiny_sweep(folder: Path, grid: int) -> Path:
    """A grid x grid sweep file over a tiny random classifier and real review texts."""
    import pandas as pd

    from tests.tiny_bert import make_tiny_hf_classifier
    from workbench.data.datasets import load_rotten_tomatoes

    make_tiny_hf_classifier(folder / "model", ["fresh", "rotten"], seed=1)
    ds = load_rotten_tomatoes().dataset.shuffle(seed=3).select(range(200))
    names = ["rotten", "fresh"]
    df = pd.DataFrame({"sentence": ds["text"], "y": [names[i] for i in ds["label"]]})
    df.iloc[:100].to_csv(folder / "val.csv", index=False)
    df.iloc[100:].to_csv(folder / "calib.csv", index=False)
    (folder / "experiment.toml").write_text(EXPERIMENT, encoding="utf-8")
    methods = ", ".join(f'"{m}"' for m in METHODS[:grid])
    sizes = ", ".join(str(16 * (i + 1)) for i in range(grid))
    text = 'name = "overhead"\nbase = "experiment.toml"\n[axes]\n'
    text += f"calibration.method = [{methods}]\ncalibration.n = [{sizes}]\n"
    (folder / "sweep.toml").write_text(text, encoding="utf-8")
    return folder / "sweep.toml"


def inline(sweep: Path, out: Path) -> list[float]:
    """Every cell in this process, one after another; seconds per cell."""
    times = []
    for cell in load_sweep(sweep).cells:
        t0 = time.perf_counter()
        opts = RunOptions(str(out / "cells"), str(out / "calibration_sets"), cell.key,
                          progress=False)  # fmt: skip
        run_experiment(cell.experiment, opts)
        times.append(time.perf_counter() - t0)
    return times


def ray_init_seconds(num_cpus: int) -> float:
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=num_cpus, resources={"timing": 1}, include_dashboard=False)
    ray.shutdown()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", help="sweep file (default: a tiny grid made here)")
    ap.add_argument("--grid", type=int, default=2, help="tiny grid size per axis (1..4)")
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sweep_overhead.json"))
    add_overwrite_flag(ap)
    args = ap.parse_args(argv)
    before = load_average()
    work = Path(tempfile.mkdtemp(prefix="sweep-overhead-"))
    os.environ.setdefault("WORKBENCH_CACHE", str(work / "cache"))
    sweep = Path(args.sweep) if args.sweep else tiny_sweep(work, args.grid)
    n = len(load_sweep(sweep).cells)
    inline(sweep, work / "warm")  # fills the cache: both timed runs below reuse it
    per_cell = inline(sweep, work / "inline")
    t_inline = sum(per_cell)
    t_init = ray_init_seconds(args.num_cpus)
    t0 = time.perf_counter()
    result, _ = run_sweep(load_sweep(sweep), SweepOptions(str(work / "ray"), num_cpus=args.num_cpus,
                                                          report=False))  # fmt: skip
    t_ray = time.perf_counter() - t0
    task_s = sum(c.wall_s for c in result.cells)
    rows = {
        "cells": n,
        "inline_total_s": t_inline,
        "inline_per_cell_s": t_inline / n,
        "ray_total_s": t_ray,
        "ray_init_s": t_init,
        "ray_cell_tasks_s": task_s,
        "ray_outside_tasks_s": t_ray - t_init - task_s,  # prepare tasks, worker start, pickling
        "overhead_total_s": t_ray - t_inline,
        "overhead_per_cell_s": (t_ray - t_init - t_inline) / n,
        "failed": len(result.failed),
    }
    print(f"{'measure':<24}{'seconds':>10}")
    for k, v in rows.items():
        print(f"{k:<24}{v:>10.2f}" if isinstance(v, float) else f"{k:<24}{v:>10}")
    result = {"results": rows, "num_cpus": args.num_cpus,
              "provenance": collect_provenance().__dict__}  # fmt: skip
    save_result(args.out, result, before, force=args.force_overwrite)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
