# The two commands: `make run` starts pedipacs, `make test` runs every check. Both install first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install run test lint system-deps viewer docs bench bench-dicomweb bench-worklist bench-hl7 bench-reading clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: install viewer
	$(BIN)/pedipacs serve

# DCMTK (storescu, findscu, ...) and dicom3tools (dciodvfy) are the tests' real DICOM peers.
system-deps:
	@bash scripts/install-system-deps.sh

# The OHIF viewer's published build (npm @ohif/app, version pinned in the script), served under /viewer.
viewer:
	@bash scripts/install-viewer.sh var/viewer

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/cog --check docs/configuration.md

test: install system-deps viewer lint
	$(BIN)/pytest

docs: install
	$(BIN)/cog -r docs/configuration.md

bench: install system-deps
	@bash bench/install-deps.sh
	$(BIN)/python bench/ingest.py

bench-dicomweb: install system-deps viewer
	@bash bench/install-deps.sh
	$(BIN)/python bench/dicomweb.py

bench-worklist: install system-deps
	$(BIN)/python bench/worklist.py

bench-hl7: install system-deps
	$(BIN)/python bench/hl7_orders.py

bench-reading: install system-deps
	$(BIN)/python bench/reading.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
