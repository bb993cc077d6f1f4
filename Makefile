# Gongkai (公开). `make run` runs the suite on this machine; `make test` runs every test;
# `make bench` runs the benchmarks (bench/README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench install install-dev lint translations clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/gongkai up

test: install-dev
	$(BIN)/python -m pytest

bench: install-dev
	OMP_NUM_THREADS=1 $(BIN)/python -m bench.router
	$(BIN)/python -m bench.search_relevance
	$(BIN)/python -m bench.freshness

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

translations: install-dev
	$(BIN)/pybabel extract -F babel.cfg -k _ -k gettext -o services/portal/translations/messages.pot services interpret consult search
	$(BIN)/pybabel update -i services/portal/translations/messages.pot -d services/portal/translations
	$(BIN)/pybabel compile -d services/portal/translations

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
