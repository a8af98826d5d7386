# The two set-up commands of the README. Both install everything into .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# test-only oracle; --no-deps so it cannot pull a different (CUDA) torch
	$(BIN)/pip install -q --no-deps torchattacks==3.5.1
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/advlab serve

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV)
