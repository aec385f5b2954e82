# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both depend on `install`, which (re)creates .venv when it is missing or pyproject.toml changed,
# with every extra: dev (pytest, ruff), notebooks (Jupyter, nbclient) and cluster (submitit).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-from-pyproject

.PHONY: install test test-fast demo study lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev,notebooks,cluster]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

demo: install
	$(BIN)/python -m taskcompat.demo

study: install
	$(BIN)/python -m taskcompat.demo --study

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) demo_output .pytest_cache
