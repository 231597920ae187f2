"""Models: the prepared classifier artifact, its torch module, ONNX export."""
