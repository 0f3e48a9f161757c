# One command for each job on a fresh clone; each creates .venv on first use.
#   make demo   - a full bleprov exchange over the virtual radio (no hardware): installs
#                 the runtime only, with every runtime extra (the demo runs the device,
#                 the host and the hub: the all extra)
#   make test   - lint, type checks, layer contracts and the test suite (the dev extra)
# CI's other proofs of installation (.ci/run), each in a venv of its own:
#   make test-lowest - make test's checks and suite with every direct dependency at its
#                      lowest allowed version
#   make test-py313  - the suite on Python 3.13 (test-py312: on 3.12)
#   make fuzz        - the long fuzzing campaign (docs/fuzzing.md): every decoder harness
#                      in its own process, 10^6 inputs each (FUZZ_RUNS, FUZZ_HARNESS)
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP   := $(VENV)/.installed
# Two workers (CI has two cores), one test module per worker: a module's process tests
# share module-scoped daemons and run in order. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
PYTEST_ARGS    ?= -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: demo test lint typecheck unit hw-test bench docs clean test-lowest test-python \
        test-py312 test-py313 lab fuzz cut-matrix

# A Debian python3 without python3-venv has no ensurepip: make the venv without pip, then
# fetch pip's wheel from PyPI (contrib/bootstrap-pip.py). $(call make-venv,DIR,PYTHON)
make-venv = { $(2) -m venv $(1) 2>/dev/null || { rm -rf $(1) && \
	  $(2) -m venv --without-pip $(1) && $(1)/bin/python contrib/bootstrap-pip.py; }; }

$(BIN)/python:
	$(call make-venv,$(VENV),$(PYTHON))

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all]"
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
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

# Every cell of the cut matrix (tests/radio/test_cut_matrix.py): the link cut at every
# message boundary and inside every message of several frames, in 4 modes x 3 trust steps
# (make test runs a slice of it).
cut-matrix: $(STAMP)
	BLEPROV_CUT_MATRIX=full $(BIN)/pytest -m cut_matrix tests/radio/test_cut_matrix.py -s

# The lowest allowed versions, in two passes; in each, uv takes every direct dependency at
# the lowest version pyproject.toml allows and the rest at their newest. First make test's
# checks at the dev extra's floors, then the suite at the runtime's and the other extras'
# floors (the dev extra asks newer zxing-cpp, Pillow and cryptography, for mypy only).
# The venv is made anew whenever pyproject.toml changes.
LOWEST := .venv-lowest
LOWEST_INSTALL = $(LOWEST)/bin/uv pip install --quiet --python $(LOWEST)/bin/python \
	  --resolution lowest-direct
LOWEST_SHOW = $(LOWEST)/bin/python -m pip list --format=freeze | grep -iE \
	  '^(bleak|bumble|cryptography|typer|sqlalchemy|pillow|zxing-cpp|pytest[a-z-]*|mypy|ruff)=='
$(LOWEST)/.installed: pyproject.toml
	rm -rf $(LOWEST)
	$(call make-venv,$(LOWEST),$(PYTHON))
	$(LOWEST)/bin/python -m pip install --quiet uv
	touch $@

test-lowest: $(LOWEST)/.installed
	$(LOWEST_INSTALL) -e ".[dev]"
	$(LOWEST_SHOW)
	$(LOWEST)/bin/ruff check .
	$(LOWEST)/bin/ruff format --check .
	$(LOWEST)/bin/lint-imports
	$(LOWEST)/bin/mypy
	$(LOWEST_INSTALL) --upgrade -e ".[photo,keyring,gpio,postgresql]"
	$(LOWEST_SHOW)
	$(LOWEST)/bin/pytest $(PYTEST_ARGS)

# Another Python: contrib/ci/find-python finds (or has uv install) CPython X.Y.
test-py312 test-py313: test-py3%:
	$(MAKE) --no-print-directory test-python PY_VERSION=3.$*

test-python:
	@test -n "$(PY_VERSION)" || { echo "say which Python: make test-python PY_VERSION=3.13"; exit 2; }
	[ -x .venv-py$(PY_VERSION)/bin/python ] || \
	  { py=$$(contrib/ci/find-python $(PY_VERSION)) && $(call make-venv,.venv-py$(PY_VERSION),$$py); }
	.venv-py$(PY_VERSION)/bin/python --version
	[ .venv-py$(PY_VERSION)/.installed -nt pyproject.toml ] || { \
	  .venv-py$(PY_VERSION)/bin/python -m pip install --quiet -e ".[dev]" && \
	  touch .venv-py$(PY_VERSION)/.installed; }
	.venv-py$(PY_VERSION)/bin/pytest $(PYTEST_ARGS)

# The real Linux stack (bluetoothd, NetworkManager, wpa_supplicant, hostapd) in a Debian
# kernel under qemu, with virtual radios; the scenarios in lab/ (docs/lab.md). As root it
# installs the Debian packages it needs, else it prints the apt line. virtme-ng boots the VM
# from a venv of its own. LAB_ARGS: e.g. --scenario zone-networkmanager.
LAB_VENV := .venv-lab
LAB_ARGS ?=
$(LAB_VENV)/.installed:
	$(call make-venv,$(LAB_VENV),$(PYTHON))
	$(LAB_VENV)/bin/python -m pip install --quiet "virtme-ng>=1.30"
	touch $@

lab: $(RUNTIME) $(LAB_VENV)/.installed
	$(BIN)/python -m lab --vng $(LAB_VENV)/bin/vng $(LAB_ARGS)

# The fuzzing campaign: the fuzz extra (atheris: libFuzzer, coverage-guided; x86-64 wheels
# only, so elsewhere the pure-Python mutator runs) in the same venv, never in the runtime
# or the dev extra. Results in fuzz-results/ (summary.md).
FUZZ_RUNS    ?= 1000000
FUZZ_HARNESS ?=
FUZZ_ARGS    ?=
FUZZ_STAMP   := $(VENV)/.fuzz-installed
$(FUZZ_STAMP): $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e ".[fuzz]"
	touch $@

fuzz: $(FUZZ_STAMP)
	FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_HARNESS="$(FUZZ_HARNESS)" $(BIN)/python -m fuzz $(FUZZ_ARGS)

hw-test: $(STAMP)
	$(BIN)/pytest hw_tests

bench: $(STAMP)
	$(BIN)/python -m benchmarks

docs: $(STAMP)
	$(BIN)/python -m bleprov.core.profile --markdown > docs/gatt-profile.md
	$(BIN)/python -m bleprov.core.wire_codes --update docs/protocol.md

clean:
	rm -rf $(VENV) $(LOWEST) $(LAB_VENV) lab-results fuzz-results .venv-py3.* .pytest_cache \
	  .mypy_cache .ruff_cache
