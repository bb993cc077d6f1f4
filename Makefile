# Gongkai (公开). `make run` runs the suite on this machine; `make test` runs every test;
# `make bench` runs the benchmarks (bench/README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-faults bench bench-wrk install install-dev lint translations clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# axe-core (package.json) for the browser tests' accessibility checks, from npm when there is one (Debian: nodejs npm).
node_modules/.installed: package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund && touch $@; \
	else echo "npm not found: tests/browser/test_accessibility.py needs it (apt-get install nodejs npm)"; fi

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev node_modules/.installed

run: install
	$(BIN)/gongkai up

test: install-dev
	$(BIN)/python -m pytest

# The fault tests alone (they are also part of `make test`), with their [fault] count lines.
test-faults: install-dev
	$(BIN)/python -m pytest tests/faults -s

# Every scenario writes bench/results/<name>.json; bench.report prints one table of all of them (and writes
# summary.json / summary.png). Each runs at its default scale; a scenario that fails does not stop the others
# (its row then shows the previous figure or none). The load scenarios need Debian's wrk: installed when missing.
BENCH_SCENARIOS := search_relevance http_pages search_api submissions staff_inbox hot_topics

bench: install-dev bench-wrk
	@date +%s > bench/results/.started
	-OMP_NUM_THREADS=1 $(BIN)/python -m bench.router
	-$(BIN)/python -m bench.freshness --under-submissions
	-$(foreach scenario,$(BENCH_SCENARIOS),$(BIN)/python -m bench.$(scenario);)
	-$(BIN)/python -m bench.reindex --no-warm
	$(BIN)/python -m bench.report
	@echo "make bench took $$(( $$(date +%s) - $$(cat bench/results/.started) )) s"

bench-wrk:
	@command -v wrk >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) \
		|| { echo "make bench needs wrk: apt-get install wrk"; exit 1; }

# One scenario alone, then the table: make bench-http_pages, make bench-submissions, ...
bench-%: install-dev bench-wrk
	$(BIN)/python -m bench.$*
	$(BIN)/python -m bench.report

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

translations: install-dev
	$(BIN)/pybabel extract -F babel.cfg -k _ -k gettext -o services/portal/translations/messages.pot services interpret consult search
	$(BIN)/pybabel update -i services/portal/translations/messages.pot -d services/portal/translations
	$(BIN)/pybabel compile -d services/portal/translations

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
