"""The Workspace: an experiment's data, splits, tokenizer and model, loaded and checked once.

Everything cheap is checked when the Workspace opens (files, columns, labels against the
model, sizes, truncation), before any training, export or calibration. The expensive
parts (training the default classifier, the ONNX export) are built on first use and cached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from workbench.backends.model_files import check_model_files
from workbench.data.datasets import (
    LabelledData,
    Splits,
    load_labelled_file,
    load_rotten_tomatoes,
    make_splits,
    subset,
    test_set_sha256,
)
from workbench.data.tokenize import TOKEN_INPUTS, TextTokenizer
from workbench.data.traffic import Traffic
from workbench.errors import ConfigError, DataError
from workbench.results.spec import CalibrationSpec, Experiment

if TYPE_CHECKING:
    from datasets import Dataset

    from workbench.backends.base import Feed
    from workbench.backends.onnxruntime.export import ExportInfo
    from workbench.backends.registry import ModelFiles
    from workbench.experiment.calibrate import CalibrationOutcome
    from workbench.experiment.progress import Stages

log = logging.getLogger(__name__)

TRUNCATION_WARN_SHARE = 0.5
QUICK_TEST, QUICK_CALIB, QUICK_TRAIN = 300, 64, 800


@dataclass(frozen=True)
class ModelSource:
    """Where the user's model comes from and what it outputs."""

    kind: str  # "default" | "hf" | "onnx"
    path: str  # artifact dir (default, once trained), HF folder or .onnx file
    labels: list[str]  # output names in logit order
    tokenizer_file: str
    content_key: str
    input_names: tuple[str, ...]  # the token inputs every feed, export and build uses


@dataclass
class Workspace:
    """Data + model of one experiment. Open it with ``Workspace.from_experiment(exp)``."""

    exp: Experiment
    data_name: str
    source_path: str
    source_sha256: str
    data_labels: list[str]
    test: Dataset
    pool: Dataset
    splits: Splits | None  # the default classifier trains on splits.train
    tokenizer: TextTokenizer
    model: ModelSource
    label_perm: list[int]  # data label i -> model output index
    warnings: list[str] = field(default_factory=list)
    traffic: Traffic | None = None  # [data] unlabeled: text only, never split or labelled
    disagreement_labels: dict[str, str] = field(default_factory=dict)  # text -> label name

    @classmethod
    def from_experiment(cls, exp: Experiment, *, quick: bool | None = None) -> Workspace:
        """The one way in for every command, the search, the sweep and the benchmarks:
        ``--quick``'s small subsets (when ``quick``, or ``exp.quick`` when ``quick`` is None),
        then ``open``. Calibration follows with ``calibrate`` once the output folder is known.

        Example::

            ws = Workspace.from_experiment(load_experiment("experiment.toml"), quick=True)
            calib = ws.calibrate(run_dir, "calibration_sets")
        """
        if exp.quick if quick is None else quick:
            exp = apply_quick(exp)
        return cls.open(exp)

    def calibrate(
        self,
        out_dir: str | Path,
        sets_root: str,
        *,
        stages: Stages | None = None,
        compare: bool = True,
        fp8: bool = False,
    ) -> CalibrationOutcome:
        """The calibration set (under ``sets_root``), its tables and (when ``compare`` and
        ``[calibration] compare``) the methods comparison, written into ``out_dir``."""
        from workbench.experiment.calibrate import prepare_calibration
        from workbench.experiment.progress import Stages

        st = stages if stages is not None else Stages(False)
        return prepare_calibration(self, Path(out_dir), sets_root, st, compare=compare, fp8=fp8)

    @classmethod
    def open(cls, exp: Experiment) -> Workspace:
        """Load data and inspect the model; raise on anything that would fail later."""
        data, splits, test, pool = _load_data(exp)
        model, tok = _inspect_model(exp, data)
        check_model_files(model.kind, model.path)  # weights read now: damaged -> exit 2
        from workbench.data.labels import match_labels

        perm = match_labels(model.labels, data.label_names, where=exp.source or "experiment")
        test = subset(test, exp.evaluate.n_test, exp.seed)
        ws = cls(
            exp=exp,
            data_name=data.name,
            source_path=data.source_path,
            source_sha256=data.source_sha256,
            data_labels=list(data.label_names),
            test=test,
            pool=pool,
            splits=splits,
            tokenizer=tok,
            model=model,
            label_perm=perm,
        )
        ws._check_sizes()
        ws._load_traffic()
        return ws

    # ----------------------------------------------------------------- test data
    @property
    def texts(self) -> list[str]:
        return list(self.test["text"])

    @property
    def pairs(self) -> list[str] | None:
        return list(self.test["text_pair"]) if "text_pair" in self.test.column_names else None

    @cached_property
    def labels(self) -> np.ndarray:
        """Test labels as model output indices."""
        perm = np.asarray(self.label_perm, dtype=np.int64)
        return perm[np.asarray(self.test["label"], dtype=np.int64)]

    @cached_property
    def test_sha256(self) -> str:
        return test_set_sha256(self.test)

    # ----------------------------------------------------------------- traffic
    @property
    def traffic_texts(self) -> list[str]:
        """The unlabelled traffic texts ([] without ``[data] unlabeled``)."""
        return self.traffic.texts if self.traffic else []

    def traffic_feeds(self, idx: np.ndarray, batch_size: int = 32) -> list[Feed]:
        """Model inputs of the traffic rows ``idx``, batched, through the Workspace's tokenizer."""
        texts = self.traffic_texts
        rows = [int(i) for i in idx]
        return [
            self.tokenizer.encode([texts[i] for i in rows[s : s + batch_size]])
            for s in range(0, len(rows), batch_size)
        ]

    def _load_traffic(self) -> None:
        d = self.exp.data
        if not d.unlabeled:
            return
        from workbench.data.traffic import load_traffic, read_disagreement_labels

        self.traffic = load_traffic(d.unlabeled, d.text_column)
        if d.disagreement_labels:  # the file's shape and label names now; its texts after scoring
            self.disagreement_labels = read_disagreement_labels(
                d.disagreement_labels, self.model.labels
            )

    # ----------------------------------------------------------------- model
    @property
    def input_names(self) -> tuple[str, ...]:
        """The model's token inputs (what ``tokenizer.encode`` makes): decided once, in
        ``_inspect_model``, from the model (forward + tokenizer, or the ONNX graph)."""
        return self.model.input_names

    @cached_property
    def torch_model_dir(self) -> str:
        """What a PyTorch build loads ("" for an .onnx model); trains the default classifier."""
        if self.model.kind == "onnx":
            return ""
        if self.model.kind == "hf":
            return self.model.path
        from workbench.backends.pytorch.prepare import prepare_classifier

        assert self.splits is not None  # the default model always has splits
        m = self.exp.model
        art = prepare_classifier(
            self.splits,
            finetune=m.finetune,
            max_train=m.max_train,
            max_length=self.exp.data.max_length,
            seed=self.exp.seed,
        )
        return str(art.path)

    @property
    def model_files(self) -> ModelFiles:
        """What every build starts from (exports the FP32 ONNX model on first use)."""
        from workbench.backends.registry import ModelFiles

        return ModelFiles(
            fp32_onnx=self.export.onnx_path,
            torch_model=self.torch_model_dir,
            tokenizer_file=self.model.tokenizer_file,
            max_length=self.exp.data.max_length,
        )

    @cached_property
    def export(self) -> ExportInfo:
        """The verified FP32 ONNX model (exported and cached, or the user's own file)."""
        if self.model.kind == "onnx":
            from workbench.backends.onnxruntime.export import ExportInfo
            from workbench.fileio import sha256_file

            return ExportInfo(
                onnx_path=self.model.path,
                onnx_sha256=sha256_file(self.model.path),
                opset=0,
                exporter="user-supplied ONNX",
                max_abs_err=0.0,
                min_cosine=1.0,
                torch_version="",
            )
        from workbench.backends.onnxruntime.export import cached_export, export_classifier
        from workbench.backends.pytorch.backend import load_module, model_dir_sha256

        path = Path(self.torch_model_dir)
        key = model_dir_sha256(path)
        # a user's HF head (pooler, classifier Linears on 2-D inputs): MatMul + Add runs in INT8
        hf = self.model.kind == "hf"
        hit = cached_export(key, self.input_names, int8_ready=hf)  # no torch on a hit
        if hit is not None:
            return hit
        return export_classifier(
            load_module(path), self.tokenizer, key, self.input_names, int8_ready=hf
        )

    # ----------------------------------------------------------------- checks
    def _check_sizes(self) -> None:
        exp, src = self.exp, self.exp.source or "experiment"
        if len(self.test) < 1:
            raise DataError(f"{src}: the test data is empty")
        from workbench.data.calibset import usable_pool_size

        n, pool = exp.calibration.n, usable_pool_size(self.pool)  # after dedupe, as sampled
        if n > pool:
            if n != CalibrationSpec.n and not exp.quick:  # --quick lowered n itself
                raise ConfigError(
                    f"{src}: [calibration] n = {n} is larger than the calibration pool "
                    f"({pool} distinct samples of {len(self.pool)}); lower n or give a larger "
                    "[data] calibration file"
                )
            self._warn(
                f"calibration pool has only {pool} distinct samples (of {len(self.pool)}); "
                "calibrating on all of them"
            )
            self.exp = replace(exp, calibration=replace(exp.calibration, n=pool))
        lengths = self.tokenizer.lengths(self.texts, pairs=self.pairs)
        share = float(np.mean(lengths > self.tokenizer.max_length))
        if share > TRUNCATION_WARN_SHARE:
            self._warn(
                f"{share:.0%} of test texts are longer than max_length = "
                f"{self.tokenizer.max_length} tokens and get truncated; raise [data] max_length "
                "if the model was trained on longer inputs"
            )

    def _warn(self, message: str) -> None:
        log.warning(message)
        self.warnings.append(message)


def apply_quick(exp: Experiment) -> Experiment:
    """Small subsets (CI, a first look): same stages, minutes instead of tens of minutes."""
    e, c, m = exp.evaluate, exp.calibration, exp.model
    n_test = QUICK_TEST if e.n_test is None else min(e.n_test, QUICK_TEST)
    return replace(
        exp,
        quick=True,
        evaluate=replace(
            e, n_test=n_test, iterations=min(e.iterations, 10), max_seconds=min(e.max_seconds, 5)
        ),
        calibration=replace(c, n=min(c.n, QUICK_CALIB)),
        model=replace(m, max_train=QUICK_TRAIN if m.max_train is None else m.max_train)
        if m.default
        else m,
    )


def _load_data(exp: Experiment) -> tuple[LabelledData, Splits | None, Dataset, Dataset]:
    d = exp.data
    if d.shipped:
        data = load_rotten_tomatoes()
    elif d.file:
        data = load_labelled_file(d.file, d.text_column, d.label_column, d.text_pair_column)
    else:
        data = load_labelled_file(d.test, d.text_column, d.label_column, d.text_pair_column)
        if exp.model.default:
            raise ConfigError(
                "the default classifier trains on your data: use [data] file = <one labelled "
                "file> (split 60/20/20), not test/calibration"
            )
        if d.calibration:
            pool = load_labelled_file(
                d.calibration,
                d.text_column,
                d.label_column,
                d.text_pair_column,
                label_names=data.label_names,
            )
            return data, None, data.dataset, pool.dataset
        halves = data.dataset.train_test_split(test_size=0.25, seed=exp.seed)
        log.warning("no [data] calibration file: calibrating on 25% of the test file, held out")
        return data, None, halves["train"], halves["test"]
    splits = make_splits(data, seed=exp.seed)
    return data, splits, splits.test, splits.calibration_pool


def _inspect_model(exp: Experiment, data: LabelledData) -> tuple[ModelSource, TextTokenizer]:
    m, max_length = exp.model, exp.data.max_length
    if m.kind == "default":
        from workbench.backends.pytorch.prepare import default_base_model

        tok = TextTokenizer.from_model_dir(default_base_model(), max_length)
        names = TOKEN_INPUTS  # the workbench's own BERT classifier takes all three
        src = ModelSource("default", "", list(data.label_names), str(tok.path), "", names)
        return src, tok
    if m.kind == "hf":
        from workbench.backends.pytorch.hf import inspect_hf_folder

        info = inspect_hf_folder(m.path)
        tok = TextTokenizer.from_model_dir(info.path, max_length, info.input_names)
        if max_length > info.max_positions:
            raise ConfigError(
                f"[data] max_length = {max_length} exceeds the model's "
                f"{info.max_positions} positions; lower it"
            )
        src = ModelSource(
            "hf", info.path, list(info.labels), str(tok.path), info.content_key, info.input_names
        )
        return src, tok
    from workbench.backends.onnxruntime.inspect import check_onnx_model, inspect_onnx

    info_onnx = inspect_onnx(m.path)
    tok = TextTokenizer.from_model_dir(m.tokenizer, max_length)
    check_onnx_model(info_onnx, tok, m.labels)
    tok = tok.with_inputs(info_onnx.input_names)  # the graph's inputs decide
    src = ModelSource(
        "onnx", m.path, list(m.labels), str(tok.path), info_onnx.sha256, info_onnx.input_names
    )
    return src, tok
