# The two set-up commands of the README. Both install everything into .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve test test-all bench clean

$(STAMP): pyproject.toml
	@echo "advlab: installing everything into $(VENV) (first run only; about 1-2 minutes)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "advlab: [1/4] pip" && $(BIN)/pip install -q --upgrade pip
	@echo "advlab: [2/4] torch 2.13.0 (CPU)" && $(BIN)/pip install -q torch==2.13.0
	@echo "advlab: [3/4] advlab and its dependencies" && $(BIN)/pip install -q -e '.[dev]'
	@# test-only oracle; --no-deps so it cannot pull a different (CUDA) torch
	@echo "advlab: [4/4] torchattacks (test oracle)" && $(BIN)/pip install -q --no-deps torchattacks==3.5.1
	@touch $(STAMP) && echo "advlab: installed"

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/advlab serve

# pytest-xdist, one worker per core; loadscope keeps a module's tests (and its module-scoped
# fixtures) on one worker. `make test` leaves the `slow` tests out; `make test-all` (and CI=true)
# runs everything.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadscope tests

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadscope --slow tests

# Quick versions of every benchmark (tables on stdout, JSON under benchmarks/results/);
# run a script without its quick flag for the full sizes reported in the issues.
bench: $(STAMP)
	mkdir -p benchmarks/results
	$(BIN)/python benchmarks/advcore_bench.py --small --json benchmarks/results/advcore.json
	$(BIN)/python benchmarks/attack_bench.py --small --repeat 1 --json benchmarks/results/attack.json
	$(BIN)/python benchmarks/train_bench.py --quick --json benchmarks/results/train.json
	$(BIN)/python benchmarks/store_bench.py --backend both --json benchmarks/results/store.json
	$(BIN)/python benchmarks/api_bench.py --backend both --submits 200 --json benchmarks/results/api.json
	$(BIN)/python benchmarks/plots_bench.py --json benchmarks/results/plots.json
	$(BIN)/python benchmarks/separation_bench.py --json benchmarks/results/separation.json
	$(BIN)/python benchmarks/load_bench.py --quick --json benchmarks/results/load.json
	$(BIN)/python benchmarks/cost_bench.py --json benchmarks/results/cost.json
	$(BIN)/python benchmarks/admission_bench.py --json benchmarks/results/admission.json
	$(BIN)/python benchmarks/queue_bench.py --rounds 1 --epochs 20 --json benchmarks/results/queue.json

clean:
	rm -rf $(VENV)
