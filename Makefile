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
export MARIADB_PORT ?= 3307
export MOTO_URL := http://127.0.0.1:$(MOTO_PORT)
export LOCAL_SF_URL := http://127.0.0.1:$(LOCAL_SF_PORT)

.PHONY: help venv venv-deploy mariadb build build-host deploy cargo-lambda template-check test test-arm64 lint fmt bench local-up local-down demo demo-cdc invoke bootstrap loadgen loadtest cost clean

help:
	@echo "make demo        run the pipeline on the local stack and show what landed"
	@echo "make demo-cdc    20,000 changes on MariaDB → DMS and Debezium records → upsert; compare tables"
	@echo "make test        lint, then every test (starts and stops the local stack)"
	@echo "make bench       criterion benchmarks + peak memory of a 6 MB batch"
	@echo "make loadtest    merge vs streaming mode at 1/4/16/32 shards on the local stack (a few minutes)"
	@echo "make cost        monthly cost of each path from billed durations measured on the local stack"
	@echo "                 (MEASURE=0: from the committed local/cost/measured.json; ARGS=\"--rate 50 --record-bytes 800\")"
	@echo "make test-arm64  the shared library's unit tests for arm64 under qemu (optional)"
	@echo "make build       the three functions for Lambda (arm64, cargo lambda via sam build)"
	@echo "make deploy      sam deploy --guided (after make build)"
	@echo "make template-check  cfn-lint, sam validate --lint, sam validate (local transform)"
	@echo "make lint        cargo fmt --check and clippy -D warnings"
	@echo "make local-up    start moto and the local Snowflake service; make local-down stops them"
	@echo "make invoke FUNCTION=orchestrator|upsert|loader EVENT=events/<file>.json [TIMES=2]"
	@echo "                 the real binary behind a local Lambda Runtime API (after make local-up)"

# The local stack's Python side (moto, fakesnow on DuckDB) in a project-local virtual environment.
$(VENV_STAMP): local/requirements.txt local/requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r local/requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r local/requirements-nodeps.txt
	touch $@

venv: $(VENV_STAMP)

# The CDC source database of the local stack (Debian's mariadb-server; apt-get as root, once).
mariadb:
	local/install_mariadb.sh

# Deploy tooling (aws-sam-cli, for the template checks in `make test`, `sam local generate-event`,
# `sam build`, `sam deploy`) in its own environment: it pins boto3/click/pydantic below the local
# stack's versions, so one environment would downgrade the other.
DEPLOY_VENV := .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed
ZIG_STAMP := $(DEPLOY_VENV)/.ziglang
ZIGLANG_VERSION := 0.15.2
CARGO_LAMBDA_VERSION := 1.9.2
export SAM_CLI_TELEMETRY := 0

$(DEPLOY_STAMP): local/requirements-deploy.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --disable-pip-version-check -r local/requirements-deploy.txt
	touch $@

venv-deploy: $(DEPLOY_STAMP)

template-check: $(VENV_STAMP) $(DEPLOY_STAMP)
	local/template_check.sh

$(ZIG_STAMP): $(DEPLOY_STAMP)
	$(DEPLOY_VENV)/bin/pip install --quiet --disable-pip-version-check ziglang==$(ZIGLANG_VERSION)
	touch $@

cargo-lambda:
	@command -v cargo-lambda >/dev/null || { \
	  echo "installing cargo-lambda $(CARGO_LAMBDA_VERSION) (~20 min on 2 cores, once)"; \
	  $(CARGO) install cargo-lambda --locked --version $(CARGO_LAMBDA_VERSION); }
	rustup target add aarch64-unknown-linux-gnu

# The three functions for Lambda (arm64) into .aws-sam/build: sam runs
# `cargo lambda build --release --arm64 --bin <name>` for each (zig from PyPI cross-links).
build: $(ZIG_STAMP) cargo-lambda
	CARGO_ZIGBUILD_PYTHON_PATH=$(CURDIR)/$(DEPLOY_VENV)/bin/python $(DEPLOY_VENV)/bin/sam build

deploy: build
	$(DEPLOY_VENV)/bin/sam deploy --guided

# Native release binaries of every function and tool (no cross-compilation).
build-host:
	$(CARGO) build --release --locked --workspace --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

local-up: $(VENV_STAMP)
	local/stack.sh up
	@if command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; then local/stack.sh mariadb-up; \
	  else echo "(MariaDB, the CDC source, is not installed: make mariadb)"; fi

local-down:
	local/stack.sh down

# Build everything first so the stack is only up while tests run; stop it whatever the outcome.
test: $(VENV_STAMP) $(DEPLOY_STAMP) mariadb lint
	$(CARGO) test --workspace --locked --no-run
	$(CARGO) build --locked -p orchestrator -p upsert -p loader -p tools --bin orchestrator --bin upsert --bin loader --bin bootstrap
	WITH_MARIADB=1 local/stack.sh up
	status=0; \
	  $(CARGO) test --workspace --locked || status=$$?; \
	  $(VENV)/bin/python -m pytest local/tests -q -p no:cacheprovider || status=$$?; \
	  local/stack.sh down; \
	  exit $$status

# The shared library's unit tests built for Lambda's arm64 and run under qemu, for the NEON
# scanning path. Not part of `make test`: it needs Debian's qemu-user and gcc-aarch64-linux-gnu
# (apt-get install qemu-user gcc-aarch64-linux-gnu) and ~10 minutes of cross-compiling.
ARM64_ENV := CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
test-arm64:
	@command -v qemu-aarch64 >/dev/null && command -v aarch64-linux-gnu-gcc >/dev/null || { \
	  echo "test-arm64 needs: apt-get install qemu-user gcc-aarch64-linux-gnu"; exit 2; }
	rustup target add aarch64-unknown-linux-gnu
	$(ARM64_ENV) $(CARGO) test --locked -p shared --lib --target aarch64-unknown-linux-gnu

bench:
	$(CARGO) bench -p shared --features sample --bench pipeline
	$(CARGO) bench -p upsert --bench upsert
	@echo "peak memory of one ~5 MB batch (medium records → CSV + gzip-1):"
	$(CARGO) run --quiet --profile bench -p shared --features sample --example peak_rss
	@echo "release binaries (as Lambda runs them): size, and init = exec until the first /next poll:"
	$(CARGO) build --release --locked -p orchestrator -p upsert -p loader
	$(VENV)/bin/python local/tools/invoke.py --report target/release --cold-start 20

# The demo and the tools talk to the local stack through the same variables a deployment uses.
LOCAL_AWS := AWS_ENDPOINT_URL=$(MOTO_URL) AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

demo: $(VENV_STAMP)
	$(CARGO) build --locked -p tools --bin demo
	local/stack.sh up
	status=0; $(LOCAL_AWS) RUST_LOG=$${RUST_LOG:-warn} $(CARGO) run -q --locked -p tools --bin demo -- $(DEMO_ARGS) || status=$$?; \
	  local/stack.sh down; exit $$status

# The CDC table-equality run as a person watches it (see README "Change data capture").
demo-cdc: $(VENV_STAMP) mariadb
	$(CARGO) build --locked -p tools --bin demo_cdc
	WITH_MARIADB=1 local/stack.sh up
	status=0; $(LOCAL_AWS) RUST_LOG=$${RUST_LOG:-warn} $(CARGO) run -q --locked -p tools --bin demo_cdc -- $(DEMO_ARGS) || status=$$?; \
	  local/stack.sh down; exit $$status

# One real function binary behind a loopback Lambda Runtime API (local/tools/invoke.py), configured
# for the local stack unless the caller exports otherwise: make local-up, then
#   make invoke FUNCTION=orchestrator EVENT=events/kinesis-sensors.json
invoke: $(VENV_STAMP)
	@case "$(FUNCTION)" in orchestrator|upsert|loader) ;; \
	  *) echo "usage: make invoke FUNCTION=orchestrator|upsert|loader EVENT=events/<file>.json [TIMES=2]"; exit 2 ;; esac
	@test -f "$(EVENT)" || { echo "EVENT=$(EVENT): no such file"; exit 2; }
	$(CARGO) build --locked -p $(FUNCTION) --bin $(FUNCTION)
	@[ "$(FUNCTION)" = orchestrator ] || $(MAKE) --no-print-directory bootstrap >/dev/null
	$(LOCAL_AWS) $(VENV)/bin/python local/tools/invoke.py --binary target/debug/$(FUNCTION) --event $(EVENT) \
	  --times $(or $(TIMES),1) --local-stack $(LOCAL_SF_URL)

# Apply sql/ to the local Snowflake (make local-up first); SNOWFLAKE_* and STAGE_URL as in the README.
bootstrap:
	SNOWFLAKE_ACCOUNT=$${SNOWFLAKE_ACCOUNT:-localtest} SNOWFLAKE_URL=$${SNOWFLAKE_URL:-$(LOCAL_SF_URL)} \
	  SNOWFLAKE_AUTH=$${SNOWFLAKE_AUTH:-pat} SNOWFLAKE_TOKEN=$${SNOWFLAKE_TOKEN:-local-dev-token} \
	  SNOWFLAKE_DATABASE=$${SNOWFLAKE_DATABASE:-INGEST} SNOWFLAKE_SCHEMA=$${SNOWFLAKE_SCHEMA:-RAW} \
	  STAGE_URL=$${STAGE_URL:-s3://raw-zone/raw/} $(CARGO) run -q --locked -p tools --bin bootstrap -- --profile local

# The upsert's two write modes side by side at 1, 4, 16 and 32 shards (not part of `make test`).
# The local Snowflake runs with its Snowflake timing model on (local/warehouse_timing.py); its own
# stack, so a stack already up (model off) is not reused: stop it first (make local-down).
loadtest: $(VENV_STAMP)
	$(CARGO) build --locked -p tools --bin loadtest
	LOCAL_SF_TIMING_MODEL=snowflake local/stack.sh up
	status=0; $(LOCAL_AWS) RUST_LOG=$${RUST_LOG:-error} $${CARGO_TARGET_DIR:-target}/debug/loadtest $(ARGS) || status=$$?; \
	  local/stack.sh down; exit $$status

# The monthly cost of each path (README "Cost: which path to pick"): measures the release binaries'
# billed durations on the local stack (a few minutes; the stack is stopped after), writes
# local/cost/measured.json, prints the table and draws local/cost/cost.svg. The local Snowflake runs
# under its Snowflake timing model, so the functions wait as long as on Snowflake.
# MEASURE=0 skips measuring (no stack, no release build) and uses the committed measurements.
MEASURE ?= 1
cost: $(VENV_STAMP)
	$(CARGO) build --locked -p tools --bin cost --bin bootstrap
	@if [ "$(MEASURE)" = 0 ]; then $${CARGO_TARGET_DIR:-target}/debug/cost $(ARGS); else \
	  $(CARGO) build --release --locked -p orchestrator -p upsert -p loader; \
	  LOCAL_SF_TIMING_MODEL=snowflake local/stack.sh up; \
	  status=0; $(LOCAL_AWS) RUST_LOG=$${RUST_LOG:-error} $${CARGO_TARGET_DIR:-target}/debug/cost --measure $(ARGS) || status=$$?; \
	  local/stack.sh down; exit $$status; fi

# Put generated records to a stream on the local stack, e.g. make loadgen ARGS="--stream s --create --count 10000".
loadgen:
	$(LOCAL_AWS) $(CARGO) run -q --locked -p tools --bin loadgen -- $(ARGS)

clean: local-down
	$(CARGO) clean
	rm -rf $(VENV) $(DEPLOY_VENV) .aws-sam local/.run
