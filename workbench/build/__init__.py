"""Builds: turn an FP32 ONNX model into the precisions a run compares."""
