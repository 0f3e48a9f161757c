# One command for each job on a fresh clone; each creates .venv on first use.
#   make demo   - a full bleprov exchange over the virtual radio (no hardware)
#   make test   - lint, type checks, layer contracts and the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit hw-test bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
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
