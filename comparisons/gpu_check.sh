#!/usr/bin/env bash
# The GPU check in one go: the CUDA tests, then the GPU benchmark, which writes its table to
# comparisons/gpu_bench_<gpu name>.md. Under five minutes on one GPU. Without CUDA it says
# so in one line and exits 0 without running anything.
#   comparisons/gpu_check.sh            (uses .venv/bin/python if present, else $PYTHON or python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing run"
    exit 0
fi
"$PY" -c 'import torch; print("gpu_check:", torch.cuda.get_device_name(0), "torch", torch.__version__, "cuda", torch.version.cuda)'
# the cuda tests (parity on the device, nondeterminism measured, NCCL data parallelism)
timeout 180 "$PY" -m pytest -q -s -m cuda -p no:cacheprovider tests
timeout 240 "$PY" comparisons/gpu_bench.py "$@"
