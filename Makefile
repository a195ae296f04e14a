# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates the virtualenv and installs what it needs first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

INTEROP := tests/interop
BARE    := $(INTEROP)/.venv-bare

.PHONY: demo test lint bench format clean interop test-pgbouncer scale

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)  ## the walkthrough, embedded: SQLite and an in-process worker
	$(BIN)/orders demo

test: $(STAMP) interop  ## the whole suite, against PostgreSQL and Redis on 127.0.0.1
	$(BIN)/pytest

# The end-to-end suite with the workers, the API and the CLI behind PgBouncer in
# transaction mode (its own pgbouncer on its own port; Debian's package); docs/scaling.md.
test-pgbouncer: $(STAMP)
	ORDERS_TEST_PGBOUNCER=1 $(BIN)/pytest tests/e2e

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

# Not part of `make test`: needs root, ip and tc, and about five minutes. Its last output
# is kept in tests/scale/LAST_RUN.txt (the figures are in its summary and docs/scaling.md).
scale: $(STAMP)  ## the many-hosts harness: network namespaces as hosts (issue 17)
	bash -o pipefail -c '{ date -u "+run at %F %T UTC on $$(nproc) cores, kernel $$(uname -r)"; \
		ORDERS_SCALE=1 $(BIN)/pytest -m scale tests/scale -p no:cacheprovider -v; } 2>&1 \
		| tee tests/scale/LAST_RUN.txt'

bench: $(STAMP)  ## the full benchmark (ORDERS_DATABASE_URL and ORDERS_BROKER_URL set)
	$(BIN)/orders bench --json bench.json

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(BARE) $(INTEROP)/node/node_modules orders.db orders.db-wal orders.db-shm \
		.pytest_cache .mypy_cache .ruff_cache
