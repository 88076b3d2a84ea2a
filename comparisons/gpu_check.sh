#!/usr/bin/env bash
# The GPU check in one go: the CUDA tests, then the GPU benchmark, which writes its table to
# comparisons/gpu_bench_<gpu name>.md. Under five minutes on one GPU. Without CUDA it says so in
# one line; it exits 0 on a machine without an NVIDIA driver, and 1 on one with a driver that torch
# cannot use (a CPU-only torch build, most often: `make gpu` installs the CUDA build), or whenever
# GPU_CHECK_REQUIRE=1 is set: a run that should have checked a GPU never passes having run nothing.
#   comparisons/gpu_check.sh            (uses .venv/bin/python if present, else $PYTHON or python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    if [ -e /proc/driver/nvidia/version ] || command -v nvidia-smi >/dev/null 2>&1; then
        why=$("$PY" -c 'from gradtwin.devices import cuda_missing; print(cuda_missing())' 2>/dev/null ||
            echo "CUDA is not available here")
        [ "$why" = "CUDA is not available here" ] && why="an NVIDIA driver is present but $why"
        echo "gpu_check: $why; nothing run" >&2
        exit 1
    fi
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing run"
    [ "${GPU_CHECK_REQUIRE:-0}" = 1 ] && exit 1
    exit 0
fi
"$PY" -c 'import torch; print("gpu_check:", torch.cuda.get_device_name(0), "torch", torch.__version__, "cuda", torch.version.cuda)'
# the cuda tests (parity on the device, nondeterminism measured, NCCL data parallelism)
timeout 180 "$PY" -m pytest -q -s -m cuda -p no:cacheprovider tests
timeout 240 "$PY" comparisons/gpu_bench.py "$@"
