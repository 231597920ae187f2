"""ONNX Runtime backend: FP32 export, INT8 static/dynamic builds, runner, INT8 audit."""
