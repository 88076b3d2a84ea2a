"""The GPU benchmark's code path, run at toy sizes on the cpu (times are not asserted)."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gradtwin.engines import ENGINES
from gradtwin.models import MODELS

ROOT = Path(__file__).resolve().parents[1]


def test_bench_runs_tiny_on_cpu_and_writes_its_table(tmp_path: Path) -> None:
    bench = runpy.run_path(str(ROOT / "comparisons" / "gpu_bench.py"))
    assert bench["main"](["--tiny", "--device", "cpu", "--out", str(tmp_path)]) == 0
    (table,) = tmp_path.glob("gpu_bench_*.md")
    rows = [line for line in table.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    for name in MODELS:
        for engine in ENGINES:
            mine = [r for r in rows if r.startswith(f"| {name} | {engine} |")]
            assert mine, f"no row for {name} {engine}"
            assert all("failed" not in r and "memory" not in r for r in mine), mine


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_gpu_check_without_cuda_says_so_and_exits_0() -> None:
    run = subprocess.run(
        ["bash", str(ROOT / "comparisons" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines() == [
        "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing run"
    ]
