# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := $(shell sed -n 's/^torch==//p' requirements.txt)
# `make gpu`: PyPI's torch wheels for Linux are CUDA builds; for another CUDA version use PyTorch's
# own index, e.g. make gpu TORCH_INDEX=https://download.pytorch.org/whl/cu130
TORCH_INDEX ?= https://pypi.org/simple

.PHONY: demo test lint install gpu clean

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is installed first and alone, pinned, so that nothing can pull a CUDA build
	$(BIN)/pip install --quiet -c requirements.txt "torch==$(TORCH)"
	$(BIN)/pip install --quiet -c requirements.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The CUDA build of the pinned torch, in place of the CPU one (several GB); the CPU build's local
# version (+cpu) is excluded so that a wheel cache cannot hand it back.
gpu: $(STAMP)
	$(BIN)/pip install --force-reinstall --index-url $(TORCH_INDEX) -c requirements.txt "torch==$(TORCH),!=$(TORCH)+cpu"
	$(BIN)/python -c "import torch; assert torch.version.cuda, 'still a CPU-only torch'; \
	print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPU available:', torch.cuda.is_available())"

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
