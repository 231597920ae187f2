"""GPU smoke check of the TensorRT backend's CUDA layer, for a GPU box (no TensorRT needed).

Run from the repo root: ``python3 -m tests.backends.tensorrt.gpu_smoke [OUT.json]``. It prints (and
optionally writes) the device name, which memory API was used, and CUDA-event timings of
pinned-memory H2D/D2H copies through ``TensorBuffers``, checking the bytes round-trip.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from workbench.backends.tensorrt.buffers import TensorBuffers
from workbench.backends.tensorrt.cuda import get_memory_api


def main(argv: list[str]) -> int:
    api = get_memory_api()
    stream = api.stream_create()
    start, stop = api.event_create(), api.event_create()
    out: dict[str, object] = {"api": api.name, "device": api.device_name(), "copies": []}
    with TensorBuffers(api) as bufs:
        for mib in (1, 16, 64):
            x = np.random.default_rng(mib).integers(0, 255, size=mib << 20, dtype=np.uint8)
            bufs.stage("x", x)
            bufs.enqueue_upload("x", stream)  # warm-up
            api.stream_synchronize(stream)
            api.event_record(start, stream)
            for _ in range(10):
                bufs.enqueue_upload("x", stream)
            api.event_record(stop, stream)
            h2d_ms = api.event_elapsed_ms(start, stop) / 10
            api.event_record(start, stream)
            back = bufs.enqueue_download("x", x.shape, x.dtype, stream)
            api.event_record(stop, stream)
            d2h_ms = api.event_elapsed_ms(start, stop)
            assert np.array_equal(back, x), "device round trip changed the bytes"
            out["copies"].append(  # type: ignore[union-attr]
                {
                    "mib": mib,
                    "h2d_gb_s": mib / 1024 / (h2d_ms / 1e3),
                    "d2h_gb_s": mib / 1024 / (d2h_ms / 1e3),
                }
            )
    api.event_destroy(start)
    api.event_destroy(stop)
    api.stream_destroy(stream)
    text = json.dumps(out, indent=2)
    print(text)
    if len(argv) > 1:
        with open(argv[1], "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
