# Every target does its own set-up: a fresh clone needs nothing but Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DAGSTER_HOME

.PHONY: demo demo-engine ui browser test test-all lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

# Load the demo tables, materialize every asset of synth.yaml in-process, print tables and SQL.
demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m dagster_project.demo

# The engine alone: fit, generate and write files under out/demo/ (no warehouse, no Dagster).
demo-engine: $(STAMP)
	$(BIN)/python -m synth_model.demo

# The Dagster UI on http://127.0.0.1:3000 with run history kept in .dagster_home/.
ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m warehouse.demo_data --if-missing
	$(BIN)/dagster dev -m dagster_project.definitions -h 127.0.0.1 -p 3000

$(DAGSTER_HOME)/dagster.yaml: dagster_project/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster_project/dagster.yaml $@

# Headless Chromium for the report render test, from Debian's packages when running as root.
browser:
	@command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell) >/dev/null \
	  || echo "note: no headless Chromium; the report render test will be skipped"; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: no tests were collected"; exit 1; fi; exit $$rc

test-all: $(STAMP) browser
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/engine.py --runs 3

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .dagster_home
