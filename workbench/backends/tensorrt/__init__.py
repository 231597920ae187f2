"""TensorRT backend over NVIDIA Polygraphy: FP32, FP16, INT8 explicit (Q/DQ) and implicit (10.x).

Polygraphy builds the network, config, profiles and engine, and runs it (``TrtRunner``:
context, stream, device buffers). Ours: the calibration feeding (``feeding``), the Q/DQ
model and TensorRT cache bridge (``workbench.calibration``), and the INT8 audit
(``audit``). Nothing here imports ``tensorrt`` or ``polygraphy`` at import time; the
registry entry is ``backend.BACKEND``. What has run where: docs/tensorrt.md.
"""
