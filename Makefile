# Two commands set everything up on a fresh machine:
#   make demo   -> installs qwen3-rag in .venv and runs the two-stage demo on the offline tiny models
#   make test   -> installs qwen3-rag with its dev extra in .venv and runs lint, types and the tests
# TORCH_SPEC pins the CPU wheel of this workplace; on a GPU machine use e.g. `make test TORCH_SPEC=torch`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
CONSTRAINTS ?= constraints/cpu-torch.txt
PIP = $(VENV)/bin/python -m pip
PIP_FLAGS = --disable-pip-version-check -q

.PHONY: demo test lint typecheck pytest install-demo install-dev clean

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

pytest:
	$(VENV)/bin/python -m pytest

test: install-dev lint typecheck pytest

clean:
	rm -rf $(VENV) .test-models .pytest_cache .mypy_cache .ruff_cache
