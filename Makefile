# The two set-up commands of the README are `make quickstart` and `make test`; both create
# .venv on first use, installing the CPU build of torch first (see constraints.txt).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install quickstart test test-all lint bench schema

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

quickstart: install          ## SFT then GRPO on the built-in tiny model, offline, with before/after eval
	PATH=$(abspath $(BIN)):$$PATH bash scripts/quickstart.sh

test: install                ## the default, CPU-only test suite (a few minutes on 2 cores)
	$(BIN)/python -m pytest -q

test-all: install            ## also the slow end-to-end tests
	$(BIN)/python -m pytest -q -m "not gpu"

lint: install
	$(BIN)/ruff check llmscisci_cfg tests bench scripts setup.py
	$(BIN)/ruff format --check llmscisci_cfg tests bench scripts setup.py

bench: install               ## every CPU benchmark, written to bench/results.json and bench/RESULTS.md
	$(BIN)/python -m bench

schema: install              ## regenerate schemas/recipe.schema.json
	$(BIN)/llmscisci schema -o schemas/recipe.schema.json
