# The two commands: `make up` runs the appliance, `make test` runs the whole suite.
# Both install what they need into .venv first.

VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: install up test lint bench chaos

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

up: install
	$(BIN)/taskbox up

test: install
	$(BIN)/pytest

# The benchmark (see "Performance" in README.md); BENCH_ARGS=--quick for a 1-minute run.
bench: install
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

chaos: install
	$(BIN)/python bench/chaos.py
