"""Calibration: streamed activation statistics, threshold methods, tables, TRT caches, Q/DQ models.

Pipeline: ``collect_statistics`` (one pass over the calibration set, bounded memory)
-> ``compute_amax`` per tensor and method -> ``CalibrationTable`` -> a TensorRT cache
(``write_trt_cache``) or an explicit Q/DQ ONNX model (``write_qdq_model``).
Accuracy recovery, model in -> model out: ``smoothquant.smooth_model``,
``bias_correction.bias_correct``, ``per_token.dynamic_matmuls``.
Submodules are imported lazily by their users; nothing heavy happens here.
"""
