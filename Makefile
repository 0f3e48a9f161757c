# One command for each job on a fresh clone; each creates .venv on first use.
#   make demo   - a full bleprov exchange over the virtual radio (no hardware): installs
#                 the runtime only
#   make test   - lint, type checks, layer contracts and the test suite (the dev extra)
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP   := $(VENV)/.installed

.PHONY: demo test lint typecheck unit hw-test bench docs clean

# A Debian python3 without python3-venv has no ensurepip: make the venv without pip, then
# fetch pip's wheel from PyPI (contrib/bootstrap-pip.py).
$(BIN)/python:
	$(PYTHON) -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV) && \
	  $(PYTHON) -m venv --without-pip $(VENV) && $(BIN)/python contrib/bootstrap-pip.py; }

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(RUNTIME)
	$(BIN)/bleprov demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

hw-test: $(STAMP)
	$(BIN)/pytest hw_tests

bench: $(STAMP)
	$(BIN)/python -m benchmarks

docs: $(STAMP)
	$(BIN)/python -m bleprov.core.profile --markdown > docs/gatt-profile.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
