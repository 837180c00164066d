# FieldSync developer commands. `make run` and `make test` bootstrap everything
# they need from a machine that has only python3.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DB ?= fieldsync.db
HOST ?= 127.0.0.1
PORT ?= 8000

export FIELDSYNC_DATABASE_URL ?= sqlite+aiosqlite:///./$(DEMO_DB)

.PHONY: run test lint typecheck migrate demo openapi bench fuzz lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime and dev tools are installed from the hash-pinned lock files only.
$(VENV)/.installed-dev: $(BIN)/python requirements-dev.lock pyproject.toml
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

run: $(VENV)/.installed-dev ## migrate a SQLite file, load the demo data, serve on 127.0.0.1:8000
	FIELDSYNC_ENV=development $(BIN)/fieldsync migrate
	FIELDSYNC_ENV=development $(BIN)/fieldsync demo load
	FIELDSYNC_ENV=development $(BIN)/fieldsync serve --host $(HOST) --port $(PORT)

migrate: $(VENV)/.installed-dev
	$(BIN)/fieldsync migrate

demo: $(VENV)/.installed-dev
	FIELDSYNC_ENV=development $(BIN)/fieldsync demo load

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check app tests bench alembic
	$(BIN)/ruff format --check app tests bench alembic

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# Tests run in two processes (pytest-xdist): many wait on servers, sleeps and I/O.
PYTEST_WORKERS ?= 2

test: lint typecheck ## lint, type checks and every test, on SQLite and PostgreSQL
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --durations=25 $(PYTEST_ARGS)

openapi: $(VENV)/.installed-dev ## regenerate openapi/openapi.json from the app
	FIELDSYNC_ENV=development $(BIN)/fieldsync openapi

# A benchmark is a script of bench/ with a main(); the others (common.py, device.py...)
# are what benchmarks and tests share.
bench: $(VENV)/.installed-dev ## run every benchmark in bench/ (see bench/README.md)
	@set -e; found=0; for script in bench/[a-z]*.py; do \
	  grep -q '^def main' "$$script" || continue; found=1; \
	  echo "== $$script"; $(BIN)/python -m bench.$$(basename $$script .py); \
	done; [ $$found = 1 ] || echo "no benchmarks in bench/ yet"

# The hostile-input tests at length: FUZZ_EXAMPLES generated calls per operation (each
# as every role) and pushed bodies per database, new random examples on every run. `make
# test` runs the same tests with a few fixed examples.
FUZZ_EXAMPLES ?= 200
fuzz: $(VENV)/.installed-dev ## fuzz every operation from the OpenAPI document, and push, at length
	FIELDSYNC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FIELDSYNC_FUZZ_SEED=random \
	  $(BIN)/python -m pytest tests/faults/test_openapi_fuzz.py tests/sync/test_push_fuzz.py \
	  --hypothesis-show-statistics $(PYTEST_ARGS)

lock: $(BIN)/python ## re-pin requirements*.lock from pyproject.toml
	$(BIN)/python -m pip install --quiet uv==0.13.9
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 --no-header --quiet -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 --no-header --quiet -o requirements-dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
