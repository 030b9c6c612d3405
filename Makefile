# pgchat. Targets:
#   make run     venv + the runtime's pinned deps, database, migrate, serve on http://$(HOST):$(PORT)
#   make test    the whole suite (lint included); adds the tools' pinned deps (requirements-dev.txt)
#                FAST=1 skips the tests marked slow (soak, benchmark, repeated faults): for
#                a quick local loop; CI (CI=true) runs them whatever FAST says
#   make lint    ruff check + ruff format --check + typecheck         make fmt   apply ruff's fixes
#   make typecheck  mypy, strict, with django-stubs (pyproject.toml)
#   make bench   the benchmarks: /me/rooms queries, search queries, then fan-out (each: a
#                table + one JSON line)
#   make bench-workspace   only the /me/rooms one (200 rooms, 1,000,000 messages; ~2 min)
#   make bench-search      only GET /search's (1,000,000 messages; p50/p95 per query kind,
#                          index size, writer cost; a few minutes)
#   make bench-saved-search  live saved searches' matching cost (1,000 open, 10 inserts/s;
#                          CPU share of the process and of its PostgreSQL backend; ~2 min)
#   make bench-fanout      only /events against per-room streams (1,000 users x 10 rooms)
#   make bench-writers     only the writers: plain INSERT, bare NOTIFY, pgchat (pgbench)
#                The fan-out and writers runs also save their output and PNG plots in
#                bench/results/ (bench/plots.py, matplotlib: a dev-only dependency)
#   make bench-presence    presence's database cost at 10,000 streams (statements, rows)
#   make psql    psql on the project's database       make db    start the database only
#   make stop    stop the embedded PostgreSQL         make clean remove .venv and .pgchat
# With DATABASE_URL set, that server is used and no embedded PostgreSQL starts.

HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Two stamps: `make run` installs what the server runs (requirements.txt) and no more;
# test, lint, fmt and bench add the tools (requirements-dev.txt). Each reinstalls only when
# its file changes, so `make run` after `make test` installs nothing.
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev
# django-stubs imports the settings, which need a database URL (only read, never connected to)
MYPY := DATABASE_URL="$${DATABASE_URL:-dbname=pgchat-typecheck}" $(VENV)/bin/mypy
# prometheus_client's multiprocess files, one set per worker, emptied at each `make run`
METRICS_DIR := .pgchat/metrics
# make bench's saved output and its pictures (bench/plots.py); not committed
RESULTS := bench/results

export DJANGO_SETTINGS_MODULE := config.settings

.PHONY: run test lint typecheck fmt bench bench-workspace bench-search bench-saved-search bench-fanout bench-writers \
	bench-presence psql db migrate stop clean venv

venv: $(DEV)

$(RUNTIME): requirements.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), \
		"pgchat needs Python 3.11 (found %d.%d): set PYTHON=/path/to/python3.11" % sys.version_info[:2]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(RUNTIME)

$(DEV): $(RUNTIME) requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(DEV)

db: $(RUNTIME)
ifndef DATABASE_URL
	$(PY) -m devtools.embedded_pg start
endif

migrate: db
	$(PY) manage.py migrate --no-input

# devtools/serve.py refuses a busy port or HOST=0.0.0.0 without ALLOWED_HOSTS in one line,
# then becomes hypercorn on the socket it bound.
run: migrate
	rm -rf $(METRICS_DIR) && mkdir -p $(METRICS_DIR)
	@PROMETHEUS_MULTIPROC_DIR=$(CURDIR)/$(METRICS_DIR) $(PY) -m devtools.serve $(HOST) $(PORT) \
		--workers $(WORKERS) -- --access-logfile - --graceful-timeout 3

# FAST=1 outside CI: -m "not slow". CI=true always runs everything.
SKIP_SLOW := $(if $(FAST),$(if $(filter true,$(CI)),,-m "not slow"))

test: lint db
	$(if $(SKIP_SLOW),@echo "pgchat: FAST=1: skipping the tests marked slow (CI runs them)")
	$(PY) -m pytest $(SKIP_SLOW) $(PYTEST_ARGS)

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MYPY)

typecheck: $(DEV)
	$(MYPY)

fmt: $(DEV)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The fan-out's and the writers' output is kept in $(RESULTS) (its last line is the JSON),
# and bench.plots draws it there as PNGs. bash with pipefail: tee must not hide a failure.
bench bench-writers: SHELL := /bin/bash
bench bench-writers: .SHELLFLAGS := -o pipefail -c

bench: migrate $(DEV)
	$(PY) -m bench.workspace_queries $(WORKSPACE_BENCH_ARGS)
	$(PY) -m bench.search_queries $(SEARCH_BENCH_ARGS)
	$(PY) -m bench.workspace_fanout $(FANOUT_BENCH_ARGS)
	mkdir -p $(RESULTS)
	$(PY) -m bench --workers $(WORKERS) $(BENCH_ARGS) | tee $(RESULTS)/fanout.txt
	$(PY) -m bench.writers $(WRITERS_BENCH_ARGS) | tee $(RESULTS)/writers.txt
	$(PY) -m bench.plots --fanout $(RESULTS)/fanout.txt --writers $(RESULTS)/writers.txt \
		--out $(RESULTS)

bench-writers: migrate $(DEV)
	mkdir -p $(RESULTS)
	$(PY) -m bench.writers $(WRITERS_BENCH_ARGS) | tee $(RESULTS)/writers.txt
	$(PY) -m bench.plots --writers $(RESULTS)/writers.txt --out $(RESULTS)

bench-presence: migrate $(DEV)
	$(PY) -m bench.presence_cost $(PRESENCE_BENCH_ARGS)

bench-fanout: migrate $(DEV)
	$(PY) -m bench.workspace_fanout $(FANOUT_BENCH_ARGS)

bench-workspace: migrate $(DEV)
	$(PY) -m bench.workspace_queries $(WORKSPACE_BENCH_ARGS)

bench-search: migrate $(DEV)
	$(PY) -m bench.search_queries $(SEARCH_BENCH_ARGS)

bench-saved-search: migrate $(DEV)
	$(PY) -m bench.saved_search_cost $(SAVED_SEARCH_BENCH_ARGS)

psql: db
ifdef DATABASE_URL
	$(PY) -c 'import os; from devtools.embedded_pg import binaries_dir; p = str(binaries_dir() / "psql"); os.execv(p, [p, os.environ["DATABASE_URL"]])'
else
	$(PY) -m devtools.embedded_pg psql
endif

stop: $(RUNTIME)
	$(PY) -m devtools.embedded_pg stop

clean: stop
	rm -rf $(VENV) .pgchat
