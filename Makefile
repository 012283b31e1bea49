# The two commands a newcomer types: `make dev` and `make test`. Both work from a fresh clone on a
# machine with Python 3.11+ and make; everything else is installed into .venv from PyPI.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint format bench check-python clean lock

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'

$(STAMP): pyproject.toml | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

dev: $(STAMP)
	$(BIN)/python scripts/dev.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: $(STAMP) lint
	$(BIN)/python scripts/run_tests.py $(PYTEST_ARGS)

# What each request costs beside the raw Vault floor, and the scale curve (README "Performance").
# Results in bench/results/; BENCH_* variables size the run, VAULT_SERVICE_BENCH_DATABASE_URL
# switches to PostgreSQL.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

# The image's hashed lock (Dockerfile): runtime dependencies with the postgres and redis extras.
# Wheels' hashes for every platform and Python are kept, so one file serves 3.11 and 3.12.
lock: $(STAMP)
	$(BIN)/python -m piptools compile --quiet --generate-hashes --extra postgres --extra redis \
	  --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
