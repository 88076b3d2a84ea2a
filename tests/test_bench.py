"""The benchmark runs end to end in its quick mode (times are never asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "comparisons" / "bench.py"


def test_quick_bench_writes_its_table(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.md"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| 30 | 1 | float64 |" in text and "Machine:" in text
    assert all(f"| {engine} |" in text for engine in ("manual", "autograd", "exact"))
    assert "| autograd (MALLOC_MMAP_THRESHOLD_=1048576) |" in text
