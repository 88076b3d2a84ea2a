# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is installed first and alone, pinned, so that nothing can pull a CUDA build
	$(BIN)/pip install --quiet -c requirements.txt "torch==2.13.0"
	$(BIN)/pip install --quiet -c requirements.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/gradtwin compare

lint: $(STAMP)
	$(BIN)/ruff check src tests comparisons
	$(BIN)/ruff format --check src tests comparisons
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/pytest -n 2 -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
