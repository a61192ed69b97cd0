# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv on first use and are fast when it already exists.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
DEV_STAMP  := $(VENV)/.stamp-dev
DEMO_STAMP := $(VENV)/.stamp-demo
PYTEST_ARGS ?=

.PHONY: demo test reliability bench docs lint type services tox-ci clean

$(PY):
	@echo ">>> creating $(VENV) and upgrading pip (first run only)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel

$(DEV_STAMP): setup.cfg setup.py pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(DEMO_STAMP)

$(DEMO_STAMP): setup.cfg setup.py pyproject.toml | $(PY)
	@echo ">>> installing mscomm_sync with Flask, gunicorn and waitress into $(VENV)"
	@echo ">>> (pip is quiet; this takes about a minute on a fresh machine, seconds after)"
	$(PY) -m pip install --quiet -e '.[flask,server]'
	@echo ">>> installed; starting the demo"
	touch $@

## services: install what the integration tests need (etcd) when we may.
services:
	@sh scripts/ensure-services

demo: $(DEMO_STAMP)
	$(PY) -m mscomm_sync.demo

test: $(DEV_STAMP) services
	$(PY) -m pytest $(PYTEST_ARGS)

## reliability: the fault-injection scenarios, long variants, with the default settings
## (`make test` runs short ones); prints the figures docs/reliability.md quotes.
reliability: $(DEV_STAMP) services
	MSCOMM_SOAK=1 $(PY) -m pytest -m reliability $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(PY) -m benchmarks

docs: $(DEV_STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html -q docs docs/_build/html

lint: $(DEV_STAMP)
	$(BIN)/ruff check mscomm_sync tests benchmarks scripts
	$(BIN)/ruff format --check mscomm_sync tests benchmarks scripts

type: $(DEV_STAMP)
	$(BIN)/mypy mscomm_sync benchmarks

clean:
	rm -rf $(VENV) .tox docs/_build build dist *.egg-info
