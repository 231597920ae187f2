#!/usr/bin/env bash
# TensorRT-backend checks for a GPU machine. Run from the repo root:
#   bash tests/backends/tensorrt/gpu_check.sh [OUT_DIR]
# Needs python3 with numpy, onnx, onnxruntime, pytest and polygraphy. Without TensorRT (the case
# on this project's lent GPU machines) the tensorrt-marked tests skip with the install hint and
# only doctor's CUDA probe (Polygraphy's CUDA runtime wrapper) says something about the GPU.
# With TensorRT installed, the tensorrt-marked tests also need torch + transformers to build
# the tiny BERT.
set -uo pipefail
out="${1:-${OUT:-/tmp/wb-gpu-check}}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c 'from workbench.commands.doctor import collect, format_table; print(format_table(collect()))' \
  2>&1 | tee "$out/doctor.txt"
python3 -m pytest tests/backends/tensorrt -m tensorrt -rs -q -p no:cacheprovider 2>&1 \
  | tee "$out/pytest_gpu.txt"
python3 -m pytest tests/backends/tensorrt -q -p no:cacheprovider 2>&1 | tail -3 | tee "$out/pytest_all.txt"
