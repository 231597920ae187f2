"""workbench: is the INT8 (or FP16) build accurate enough, and how much faster is it?

Importing the package is cheap and needs no GPU, torch or TensorRT: every heavy
dependency is imported inside the module that uses it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
