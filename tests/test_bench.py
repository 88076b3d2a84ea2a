"""The benchmark runs end to end in its quick mode and writes every table (times are never asserted)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "comparisons" / "bench.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def _rows(text: str, head: str) -> list[list[str]]:
    """The cells of each body row of the markdown table whose header starts with `head`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    body = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        body.append([c.strip() for c in line.strip("|").split("|")])
    return body


def _number(cell: str) -> float:
    return float(cell.split()[0].replace(",", ""))


def test_quick_bench_writes_every_table(tmp_path: Path) -> None:
    bench = _bench()
    out = tmp_path / "bench.md"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Machine:" in text and "(quick mode)" in text
    times = _rows(text, "| model | n x d | dtype | floor us")
    ratios = _rows(text, "| model | n x d | dtype | best peer")
    cases = [(m, size) for m in bench.MODEL_NAMES for size in ("30 x 1", "200 x 4")]
    assert [(r[0], r[1]) for r in times] == cases and [(r[0], r[1]) for r in ratios] == cases
    jax = bench.load_jax() is not None
    for t, r in zip(times, ratios, strict=True):
        floor, numpy, torch, jax_us, manual, autograd, tape, exact = t[3:11]
        assert _number(floor) > 0 and re.search(r"\((NumPy|torch)\.?", floor)
        assert all(_number(c) > 0 for c in (numpy, torch, manual, autograd, tape))
        assert (jax_us != "-") == jax
        assert (exact != "-") == (t[0] == "linear")
        best = r[3]
        assert best in (("numpy", "torch", "jax") if jax else ("numpy", "torch"))
        peer = {"numpy": numpy, "torch": torch, "jax": jax_us}[best]
        # each ratio is the quotient of the times in the first table (rounded as shown)
        assert _number(r[4]) == pytest.approx(_number(manual) / _number(peer), rel=0.02, abs=0.01)
        assert _number(r[6]) == pytest.approx(_number(tape) / _number(peer), rel=0.02, abs=0.01)
        assert _number(r[8]) == pytest.approx(_number(manual) / _number(numpy), rel=0.02, abs=0.01)
        assert _number(r[9]) == pytest.approx(_number(autograd) / _number(torch), rel=0.02, abs=0.01)
        assert _number(r[10]) == pytest.approx(_number(tape) / _number(manual), rel=0.02, abs=0.01)
        assert (r[7] != "-") == (t[0] == "linear")
    memory = _rows(text, "| model | engine |")
    assert [(m[0], m[1]) for m in memory] == [
        ("linear", "manual"),
        ("linear", "autograd (MALLOC_MMAP_THRESHOLD_=1048576)"),
        ("logistic", "manual"),
    ]


def test_bench_without_jax_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _bench()
    monkeypatch.setattr(bench, "load_jax", lambda: None)
    out = tmp_path / "bench.md"
    assert bench.main(["--quick", "--models", "linear", "--no-memory", "--out", str(out)]) == 0
    text = out.read_text()
    assert "JAX is not installed here" in text and "not measured in this run" in text
    times = _rows(text, "| model | n x d | dtype | floor us")
    assert [r[0] for r in times] == ["linear", "linear"] and all(r[6] == "-" for r in times)
    assert all(r[3] in ("numpy", "torch") for r in _rows(text, "| model | n x d | dtype | best peer"))


def test_bench_refuses_an_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stop:
        _bench().main(["--quick", "--models", "linear,ridge", "--out", str(tmp_path / "b.md")])
    assert stop.value.code == 2
