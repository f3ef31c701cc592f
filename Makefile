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
# The browser tests drive Debian's Chromium (docs/decisions.md); `make test` installs it with apt
# when it is missing (as root, or through sudo), never Playwright's own browser download. Without
# recommends, so the fonts (Arial-compatible Liberation) are named.
CHROMIUM ?= /usr/bin/chromium
APT_LOG := $(or $(TMPDIR),/tmp)/chartaudit-apt.log

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

# A rule for the file itself: nothing runs while it exists.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	else echo "error: the browser tests need $(CHROMIUM): install Debian's chromium package" \
	  "as root (apt-get install chromium), or install sudo" >&2; exit 1; fi; \
	echo "installing Debian's chromium for the browser tests (apt-get, a few minutes)"; \
	apt="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get -qq"; \
	{ $$apt update && $$apt install -y --no-install-recommends chromium fonts-liberation; } >$(APT_LOG) 2>&1 \
	  || { cat $(APT_LOG) >&2; echo "error: apt-get could not install chromium" >&2; exit 1; }; \
	test -x $(CHROMIUM) || { echo "error: chromium installed, but $(CHROMIUM) is missing" >&2; exit 1; }

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# Per stage and in total: seconds, rows/s and peak memory of a monthly run on 100,000 and
# 1,000,000 generated patients (generated once into .bench/), against a DuckDB floor, and of
# `chartaudit run` end to end; figures to benchmarks/results/latest.json (benchmarks/run.py).
# PATIENTS="100000" for one size. Then `chartaudit run --format fhir` on a 1 GB FHIR NDJSON export
# (benchmarks/fhir_memory.py); BENCH_FHIR=0 skips it.
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --patients $(or $(PATIENTS),100000 1000000)
	@if [ "$(BENCH_FHIR)" = 0 ]; then echo "FHIR memory benchmark skipped (BENCH_FHIR=0)"; \
	else $(BIN)/python benchmarks/fhir_memory.py --gb $(or $(FHIR_GB),1); fi

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .prefect .pytest_cache .ruff_cache audit.duckdb audit.duckdb.wal audit.duckdb.lock reports/out
