# imgproc: `make run` serves the embedded profile, `make test` runs every check and test.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV := $(shell scripts/bootstrap-uv.sh)
PYTEST_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8000
ROUNDS ?= 3
CHAOS_JOBS ?= 1000

.PHONY: help install run test test-unit lint format services-up services-down bench bench-quick chaos clean

help:
	@echo "make run          install, migrate and serve the embedded profile on http://$(HOST):$(PORT)"
	@echo "make test         install, start the test services, run the gates and every test, stop them"
	@echo "make test-unit    unit and contract tests on the in-memory fakes only (no services)"
	@echo "make lint         ruff (lint + format check), mypy, import boundaries"
	@echo "make format       apply ruff's formatting and safe fixes"
	@echo "make bench        the benchmark suite (docs/benchmarks.md); bench-quick: a short run"
	@echo "make chaos        ROUNDS rounds (3) of CHAOS_JOBS jobs (1000) under crashes, on the test services"

install:
	$(UV) sync --all-packages --frozen

run: install
	scripts/run-embedded.sh "$(HOST)" "$(PORT)"

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy
	$(UV) run --frozen lint-imports

format: install
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

test: lint
	scripts/with-services.sh $(UV) run --frozen pytest $(PYTEST_ARGS)

test-unit: install
	$(UV) run --frozen pytest tests/unit tests/contracts -m "not integration" $(PYTEST_ARGS)

services-up:
	scripts/services/up.sh

services-down:
	scripts/services/down.sh

# The bench group (matplotlib) comes from uv.lock; pyvips from bench/requirements.txt, beside the
# project environment. Debian tools (libvips42, libjpeg-turbo-progs, wrk) are installed by the
# suite itself when missing.
BENCH := $(UV) run --frozen --group bench --with-requirements bench/requirements.txt python -m bench

bench: install
	$(BENCH)

bench-quick: install
	$(BENCH) --quick

# Not part of `make test` (which runs one short round): minutes a round. Reports in var/chaos/.
chaos: install
	scripts/with-services.sh $(UV) run --frozen python -m chaos --rounds $(ROUNDS) --jobs $(CHAOS_JOBS)

clean:
	rm -rf .venv .tools var .mypy_cache .ruff_cache .pytest_cache .hypothesis
