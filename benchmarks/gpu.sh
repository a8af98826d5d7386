#!/usr/bin/env bash
# The CUDA figures in one call, under 5 minutes on one GPU: PGD vs torchattacks (issue 11 (b)),
# S=16 batched vs sequential seeds (d), eager vs torch.compile, and the CUDA paths of the test
# suite (pytest -m cuda). Each step has its own time limit (sum: 280 s).
#   benchmarks/gpu.sh [OUT_DIR]     (default benchmarks/results/gpu; needs .venv: make install)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/gpu}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
status=0
$PY -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(0), torch.__version__)' || exit 1
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv 2>/dev/null | tee "$OUT/nvidia-smi.csv"
run() {  # name, timeout seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || { echo "!! $name exited $rc"; status=1; }
}
run pgd 100 $PY benchmarks/pgd_bench.py --device cuda --rounds 3 --json "$OUT/pgd.json"
run seeds 60 $PY benchmarks/seeds_bench.py --device cuda --rounds 3 --json "$OUT/seeds.json"
run compile 60 $PY benchmarks/compile_bench.py --device cuda --rounds 3 --json "$OUT/compile.json"
run pytest-cuda 60 $PY -m pytest -q -m cuda tests/advcore/test_cuda.py -p no:cacheprovider
exit $status
