# tfface: two commands on a fresh machine, `make demo` and `make test`.
# Both create the virtual environment in .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tfface-installed
PYTEST_ARGS ?=

.PHONY: venv demo test lint bench-data clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/tfface demo --out runs/demo

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check tfface tests
	$(BIN)/lint-imports --no-cache

bench-data: $(STAMP)
	$(BIN)/tfface bench data --out runs/bench/data.json

clean:
	rm -rf runs build *.egg-info
