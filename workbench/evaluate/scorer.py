"""The one scorer: a model's outputs (logits or tapped activations) over a sequence of feeds.

Every "run this model on these feeds" in ``evaluate/`` goes through ``score_feeds``, which goes
through the ``Runner`` contract (``infer`` validates names, ranks and dtypes first). Logits of a
test split, of a search split, of each calibration method's Q/DQ model and the activations the
sensitivity proxies read all come from this one loop; ``model_logits`` opens the runner for an
ONNX file and stacks the first output.

Example::

    with open_eval_runner("model.onnx") as r:
        for out in score_feeds(r, feeds):
            print(out["logits"].shape)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from workbench.backends.base import Feed, Runner
from workbench.backends.onnxruntime.cuda import eval_device, open_eval_runner

__all__ = ["eval_device", "model_logits", "open_eval_runner", "score_feeds"]


def score_feeds(
    runner: Runner, feeds: Iterable[Feed], outputs: Sequence[str] | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Run each feed through ``runner.infer`` in order; yield its outputs (only ``outputs``
    when given, in that order). Lazy: a feed is made only when its turn comes.

    Example::

        logits = np.concatenate([o["logits"] for o in score_feeds(runner, feeds)])
    """
    for feed in feeds:
        out = runner.infer(feed)
        yield out if outputs is None else {name: out[name] for name in outputs}


def model_logits(
    onnx_path: str | Path, feeds: Sequence[Feed], threads: int = 0, device: str = ""
) -> np.ndarray:
    """Concatenated first output of ``onnx_path`` over ``feeds`` (float64), on ``device``
    (default: ``eval_device()``).

    Example::

        fp32 = model_logits("model.onnx", search_feeds)
    """
    with open_eval_runner(onnx_path, threads, device) as runner:
        out = [next(iter(o.values())) for o in score_feeds(runner, feeds)]
    return np.concatenate(out, axis=0).astype(np.float64)
