"""PyTorch backend: the default classifier, user HF classifiers, the runner (CPU and CUDA)."""
