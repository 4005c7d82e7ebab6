# The two commands of the README:
#   make run    set up, then run the conformance suite (against the local sandbox if no kubeconfig)
#   make test   set up, then lint, type-check and run every test (unit, then sandbox integration)
# `make run ARGS="--profile inference --kubeconfig ~/.kube/config"` passes options to `kaic run`.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kaic-installed
ARGS   ?=

.PHONY: setup run test lint unit integration bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/kaic run $(ARGS)

lint: setup
	$(BIN)/ruff check conformance tests
	$(BIN)/ruff format --check conformance tests
	$(BIN)/mypy conformance

unit: setup
	$(BIN)/pytest tests/unit -n 2 -q

integration: setup
	$(BIN)/pytest tests/integration -q -ra

test: lint unit integration

clean:
	rm -rf $(VENV) reports/*/
