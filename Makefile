# pgchat. Targets:
#   make run     venv + pinned deps, database, migrate, serve on http://$(HOST):$(PORT)
#   make test    the whole suite (lint included); set-up as for run
#   make lint    ruff check + ruff format --check     make fmt   apply ruff's fixes
#   make bench   the benchmarks: /me/rooms queries, then fan-out (each: table + one JSON line)
#   make bench-workspace   only the /me/rooms one (200 rooms, 1,000,000 messages; ~2 min)
#   make psql    psql on the project's database       make db    start the database only
#   make stop    stop the embedded PostgreSQL         make clean remove .venv and .pgchat
# With DATABASE_URL set, that server is used and no embedded PostgreSQL starts.

HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# prometheus_client's multiprocess files, one set per worker, emptied at each `make run`
METRICS_DIR := .pgchat/metrics

export DJANGO_SETTINGS_MODULE := config.settings

.PHONY: run test lint fmt bench bench-workspace psql db migrate stop clean venv

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), \
		"pgchat needs Python 3.11 (found %d.%d): set PYTHON=/path/to/python3.11" % sys.version_info[:2]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

db: $(STAMP)
ifndef DATABASE_URL
	$(PY) -m devtools.embedded_pg start
endif

migrate: db
	$(PY) manage.py migrate --no-input

run: migrate
	@echo "pgchat: serving on http://$(HOST):$(PORT)/  ($(WORKERS) worker(s); Ctrl-C to stop)"
	rm -rf $(METRICS_DIR) && mkdir -p $(METRICS_DIR)
	PROMETHEUS_MULTIPROC_DIR=$(CURDIR)/$(METRICS_DIR) $(VENV)/bin/hypercorn config.asgi:application \
		--bind $(HOST):$(PORT) --workers $(WORKERS) --access-logfile - --graceful-timeout 3

test: lint db
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: migrate
	$(PY) -m bench.workspace_queries $(WORKSPACE_BENCH_ARGS)
	$(PY) -m bench --workers $(WORKERS) $(BENCH_ARGS)

bench-workspace: migrate
	$(PY) -m bench.workspace_queries $(WORKSPACE_BENCH_ARGS)

psql: db
ifdef DATABASE_URL
	$(PY) -c 'import os; from devtools.embedded_pg import binaries_dir; p = str(binaries_dir() / "psql"); os.execv(p, [p, os.environ["DATABASE_URL"]])'
else
	$(PY) -m devtools.embedded_pg psql
endif

stop: $(STAMP)
	$(PY) -m devtools.embedded_pg stop

clean: stop
	rm -rf $(VENV) .pgchat
