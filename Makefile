# qwen3-vl-rag developer commands. `make` lists them.
# Every target that runs code builds .venv from scratch first if needed (uv, pinned versions).
# Installs compile bytecode (--compile-bytecode): without it, every fresh `qwen3-vl-rag` call on a
# machine that keeps no __pycache__ spends 15-20 s compiling torch and transformers.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
# The benchmarks get their own environment: sentence-transformers' Qwen3-VL path needs
# torchvision, which must never leak into the library's test environment.
BENCH  := .venv-bench
# pip on these machines finds the CPU torch wheel through its find-links; uv reads no pip config.
FIND_LINKS := $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV_ENV := $(if $(FIND_LINKS),UV_FIND_LINKS="$(FIND_LINKS)",)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test test-unit lint demo bench bench-media bench-index goldens clean

help: ## list the commands
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"

$(VENV)/.installed-%: pyproject.toml constraints.txt | $(UV)
	$(UV_ENV) $(UV) pip install --quiet --compile-bytecode --python $(BIN)/python \
		-c constraints.txt -e ".[$*]"
	@touch $@

$(BENCH)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(BENCH)
	$(BENCH)/bin/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(UV_ENV) $(BENCH)/bin/uv pip install --quiet --compile-bytecode --python $(BENCH)/bin/python \
		-c constraints.txt -e ".[bench]" torchvision
	@touch $@

install: $(VENV)/.installed-test ## create .venv with the library and the test tools

test: $(VENV)/.installed-test ## run the whole test suite (offline, CPU, a few minutes)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(VENV)/.installed-test ## run only the tests that need no model weights
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(VENV)/.installed-test ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check integrations tests benchmarks
	$(BIN)/ruff format --check integrations tests benchmarks
	$(BIN)/mypy

demo: $(VENV)/.installed-test ## tiny offline models: index a generated corpus, search it, write an HTML gallery
	$(BIN)/python -m qwen3_vl_rag.demo

bench: $(BENCH)/.installed ## speed and memory benchmarks (ratios against baselines, same process)
	$(BENCH)/bin/python benchmarks/bench_engine.py --st
	$(BENCH)/bin/python benchmarks/bench_media.py
	$(BENCH)/bin/python benchmarks/bench_index.py

bench-media: $(BENCH)/.installed ## media benchmark only: PDF pages/s, flat memory over big corpora
	$(BENCH)/bin/python benchmarks/bench_media.py

bench-index: $(BENCH)/.installed ## index benchmark: items/s and memory end to end, search latency at 10k items
	$(BENCH)/bin/python benchmarks/bench_index.py

goldens: $(VENV)/.installed-test ## regenerate the parity goldens: make goldens REF=path/to/Qwen3-VL-Embedding
	tests/parity/regenerate.sh $(REF)

clean: ## remove .venv and caches
	rm -rf $(VENV) $(BENCH) .pytest_cache .mypy_cache .ruff_cache
