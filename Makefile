# Two commands for a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.hftpipe-installed
export HFTPIPE_HOME ?= $(CURDIR)/.hftpipe
export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup run stop test test-fast bench compile clean

setup: $(STAMP)

# Idempotent: the stamp only goes stale when pyproject.toml changes, so a second `make test` installs nothing.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
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
