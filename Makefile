# Everything beyond Python 3.11 and pip is installed here, into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# An older DuckDB, beside the project's, to prove analysts' 1.x tools open the warehouse file.
COMPAT_DUCKDB := $(VENV)/compat-duckdb-1.1
# Prefect keeps its state in the project folder; nothing phones home (see docs/decisions.md).
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps --target $(COMPAT_DUCKDB) 'duckdb==1.1.3'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/chartaudit demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# Seconds and peak memory of each step on a 100 000-patient extract (see benchmarks/run.py).
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --patients $(or $(PATIENTS),100000)

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .prefect .pytest_cache .ruff_cache audit.duckdb audit.duckdb.wal audit.duckdb.lock reports/out
