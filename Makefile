# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates the virtualenv and installs what it needs first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

INTEROP := tests/interop
BARE    := $(INTEROP)/.venv-bare

.PHONY: demo test lint bench format clean interop

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)  ## the walkthrough, embedded: SQLite and an in-process worker
	$(BIN)/orders demo

test: $(STAMP) interop  ## the whole suite, against PostgreSQL and Redis on 127.0.0.1
	$(BIN)/pytest

# Producers in other languages, for the wire-contract tests: Node.js with celery-node
# (from the lock file), and a Python with Celery alone, without this project.
interop: $(INTEROP)/node/node_modules/.installed $(BARE)/.installed

$(INTEROP)/node/node_modules/.installed: $(INTEROP)/node/package-lock.json
	cd $(INTEROP)/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(BARE)/.installed: $(INTEROP)/python/requirements.txt
	$(PYTHON) -m venv $(BARE)
	$(BARE)/bin/pip install --quiet -r $(INTEROP)/python/requirements.txt
	touch $@

lint: $(STAMP)  ## ruff and mypy (strict on domain/, store/ and commands/)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy commands domain store readmodels bootstrap workers cli api benchmarks

bench: $(STAMP)  ## the full benchmark (ORDERS_DATABASE_URL and ORDERS_BROKER_URL set)
	$(BIN)/orders bench --json bench.json

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(BARE) $(INTEROP)/node/node_modules orders.db orders.db-wal orders.db-shm \
		.pytest_cache .mypy_cache .ruff_cache
