# The commands a person types. Quick start: `make demo`, `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed
CARGO ?= cargo
export MOTO_PORT ?= 4566
export LOCAL_SF_PORT ?= 8787
export MOTO_URL := http://127.0.0.1:$(MOTO_PORT)
export LOCAL_SF_URL := http://127.0.0.1:$(LOCAL_SF_PORT)

.PHONY: help venv build test test-rust test-local lint fmt bench local-up local-down demo clean

help:
	@echo "make demo        run the pipeline on the local stack and show what landed"
	@echo "make test        lint, then every test (starts and stops the local stack)"
	@echo "make bench       criterion benchmarks + peak memory of a 6 MB batch"
	@echo "make build       release build of every function and tool"
	@echo "make lint        cargo fmt --check and clippy -D warnings"
	@echo "make local-up    start moto and the local Snowflake service; make local-down stops them"

# The local stack's Python side (moto, fakesnow on DuckDB) in a project-local virtual environment.
$(VENV_STAMP): local/requirements.txt local/requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r local/requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r local/requirements-nodeps.txt
	touch $@

venv: $(VENV_STAMP)

build:
	$(CARGO) build --release --workspace --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

local-up: $(VENV_STAMP)
	local/stack.sh up

local-down:
	local/stack.sh down

# Build everything first so the stack is only up while tests run; stop it whatever the outcome.
test: $(VENV_STAMP) lint
	$(CARGO) test --workspace --locked --no-run
	local/stack.sh up
	status=0; \
	  $(CARGO) test --workspace --locked || status=$$?; \
	  $(VENV)/bin/python -m pytest local/tests -q -p no:cacheprovider || status=$$?; \
	  local/stack.sh down; \
	  exit $$status

bench:
	$(CARGO) bench -p shared --bench pipeline
	@echo "peak memory of one ~5 MB batch (medium records → CSV + gzip-1):"
	$(CARGO) run --quiet --profile bench -p shared --example peak_rss

demo: $(VENV_STAMP)
	$(CARGO) build --release -p tools --bin demo
	local/stack.sh up
	status=0; target/release/demo || status=$$?; local/stack.sh down; exit $$status

clean: local-down
	$(CARGO) clean
	rm -rf $(VENV) local/.run
