"""What a user's .onnx classifier takes and gives, and whether it fits the tokenizer and labels.

Checked before any session runs: a token id past the embedding table otherwise
fails deep inside ONNX Runtime, and an embedding model scores as garbage.
Reads only the graph (weights stored as external data are not loaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import ModelError
from workbench.fileio import sha256_file

if TYPE_CHECKING:
    from workbench.data.tokenize import TextTokenizer

TOKENIZER_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PASS_THROUGH = {"DequantizeLinear", "Identity", "Cast"}  # between an initializer and its Gather
_EMBED_OPS = {"EmbedLayerNormalization"}  # ORT's fused embedding: input 0 ids, input 2 word table


@dataclass(frozen=True)
class OnnxModelInfo:
    """The interface of an ONNX classifier, read from its graph."""

    path: str
    sha256: str
    input_names: tuple[str, ...]
    output_name: str
    output_rank: int  # -1 when the graph does not say
    num_outputs: int | None  # last dim of the first output when static
    vocab_size: int | None  # rows of the embedding table gathered by input_ids, when findable


def inspect_onnx(path: str | Path) -> OnnxModelInfo:
    """Read an .onnx file's inputs, first output and embedding size; ModelError if missing/corrupt.

    Example::

        info = inspect_onnx("model.onnx")
        check_onnx_model(info, tok, ["negative", "positive"])
    """
    import onnx

    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ModelError(f"ONNX model {p} not found; check [model] path")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError / RuntimeError variants on bad bytes
        raise ModelError(
            f"{p} is not a readable ONNX model ({type(exc).__name__}: {exc}); export it again"
        ) from exc
    graph = model.graph
    if not graph.output:
        raise ModelError(f"{p} has no graph outputs; export the classifier again")
    initializers = {i.name for i in graph.initializer}
    inputs = tuple(i.name for i in graph.input if i.name not in initializers)
    out = graph.output[0]
    rank, last = _shape(out)
    if rank < 0:  # no shape on the output: try ONNX shape inference once
        inferred = onnx.shape_inference.infer_shapes(model)
        rank, last = _shape(inferred.graph.output[0])
    return OnnxModelInfo(
        path=str(p),
        sha256=sha256_file(p),
        input_names=inputs,
        output_name=out.name,
        output_rank=rank,
        num_outputs=last,
        vocab_size=_embedding_rows(graph),
    )


def _shape(value_info: Any) -> tuple[int, int | None]:
    """(rank, static last dim or None); rank -1 when unknown."""
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return -1, None
    dims = tensor.shape.dim
    if not dims:
        return 0, None
    last = dims[-1]
    return len(dims), (int(last.dim_value) if last.HasField("dim_value") else None)


def _embedding_rows(graph: Any) -> int | None:
    """Rows of the word-embedding table: the Gather (or fused embedding) fed by input_ids."""
    tables = {i.name: list(i.dims) for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == "input_ids":
            table = node.input[0]
        elif node.op_type in _EMBED_OPS and node.input and node.input[0] == "input_ids":
            table = node.input[2] if len(node.input) > 2 else ""
        else:
            continue
        while table not in tables and table in producers:
            prod = producers[table]
            if prod.op_type not in _PASS_THROUGH or not prod.input:
                break
            table = prod.input[0]
        dims = tables.get(table)
        if dims:
            return int(dims[0])
    return None


def check_onnx_model(info: OnnxModelInfo, tok: TextTokenizer, labels: Sequence[str]) -> None:
    """ModelError (one line, naming the fix) when the model cannot take the tokenizer's feeds
    or does not output one logit per label.

    Example::

        check_onnx_model(inspect_onnx(path), TextTokenizer.from_model_dir(tok_dir), labels)
    """
    name = Path(info.path).name
    unknown = [n for n in info.input_names if n not in TOKENIZER_OUTPUTS]
    if unknown or "input_ids" not in info.input_names:
        raise ModelError(
            f"{name} takes inputs {list(info.input_names)} but the tokenizer feeds "
            f"{list(TOKENIZER_OUTPUTS)}; export the model with input names from that list "
            "(input_ids required)"
        )
    if info.vocab_size is not None and tok.vocab_size > info.vocab_size:
        raise ModelError(
            f"{name}'s embedding table has {info.vocab_size} rows but the tokenizer "
            f"{tok.path} has {tok.vocab_size} tokens, so token ids would run past it; "
            "use the tokenizer the model was trained with ([model] tokenizer = ...)"
        )
    if info.output_rank == 3:
        raise ModelError(
            f"{name} looks like an embedding model: [batch, seq, hidden] output "
            f"{info.output_name!r}; export a classifier (AutoModelForSequenceClassification) "
            "whose first output is logits [batch, labels]"
        )
    if info.output_rank not in (-1, 2):
        raise ModelError(
            f"{name}'s first output {info.output_name!r} has rank {info.output_rank}; a "
            "classifier outputs logits [batch, labels] — export one"
        )
    if info.num_outputs is not None and info.num_outputs != len(labels):
        raise ModelError(
            f"labels = {list(labels)} has {len(labels)} names, the model outputs "
            f"{info.num_outputs} logits; list one label per output, in output order"
        )
