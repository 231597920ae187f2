"""Per-layer INT8 sensitivity records: each quantizable node group's effect on the task.

Measured by ``layer_sensitivity`` (the one-group-at-a-time Q/DQ scoring); the whole result is
``sensitivity.json`` in its content-addressed cache folder, each layer a ``layer-*.json`` beside
it so an interrupted run resumes.

Example::

    res = SensitivityResult.load(path)
    res.ranking[:3]  # ONNX node names, most harmful first
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.errors import ResultsError
from workbench.results.records import Provenance, load_record, save_record


@dataclass(frozen=True)
class NodeGroup:
    """One quantizable MatMul/Gemm: its ONNX node, its module path and its size."""

    onnx_node: str  # e.g. /encoder/encoder/layer.3/intermediate/dense/MatMul
    module_path: str  # e.g. encoder.layer.3.intermediate.dense
    layer: int  # transformer layer index, -1 outside the layers (e.g. the head)
    sublayer: str  # e.g. intermediate.dense, attention.self.MatMul_1, head
    op_type: str
    macs: int  # multiply-accumulates at batch 1 x the reference sequence length


@dataclass(frozen=True)
class Scores:
    """Task metrics of one build on the search split, against FP32."""

    accuracy: float
    agreement: float
    kl_mean: float  # mean KL(p_fp32 || p) in nats
    max_abs_dp: float


@dataclass(frozen=True)
class LayerSensitivity:
    """One group's effect: quantized alone, left float alone, and its proxies."""

    group: NodeGroup
    only_this: Scores
    all_but_this: Scores
    sqnr_db: float  # SQNR of the layer output with fake-quantized inputs (higher: safer)
    mse: float


@dataclass(frozen=True)
class SensitivityResult:
    """Every group's sensitivity, the ranking (most harmful first) and the proxies' worth."""

    schema_version: int
    model_sha256: str
    table_method: str
    per_channel: bool
    n_samples: int
    fp32_accuracy: float
    all_quantized: Scores
    layers: list[LayerSensitivity]
    ranking: list[str]  # ONNX node names by only-this KL, descending
    spearman_sqnr: float  # Spearman rho of -SQNR vs only-this KL (1: proxy ranks perfectly)
    spearman_mse: float  # Spearman rho of MSE vs only-this KL
    seconds: float
    provenance: Provenance

    def save(self, path: str | Path) -> Path:
        """Write as JSON atomically."""
        return save_record(self, path)

    @classmethod
    def load(cls, path: str | Path) -> SensitivityResult:
        """Read a record written by ``save``."""
        return load_record(cls, path)

    def layer(self, onnx_node: str) -> LayerSensitivity:
        """The entry of one ONNX node."""
        for entry in self.layers:
            if entry.group.onnx_node == onnx_node:
                return entry
        raise ResultsError(f"no node {onnx_node!r} in this sensitivity result")
