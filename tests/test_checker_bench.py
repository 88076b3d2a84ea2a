"""The checker benchmark runs end to end at its smallest size; verdicts are asserted, never times."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CASES = ("correct", "sign flipped", "W1 largest element x2", "W1 largest row negated", "b1 x2")


@pytest.fixture(scope="module")
def bench() -> Any:
    spec = importlib.util.spec_from_file_location("checker_bench", ROOT / "comparisons" / "checker_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["checker_bench"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def rows(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """(dtype, case) -> column title -> cell, from the first Markdown table in `text`."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    out = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != len(head):
            break  # the summary table below
        row = dict(zip(head, cells, strict=True))
        out[(row["dtype"], row["case"])] = row
    return out


def verdict(cell: str) -> str:
    return cell.split(", ")[-1]


def test_hand_gradients_match_autograd(bench: Any) -> None:
    """The derivation every checker is given is right: equal to torch autograd in float64."""
    pb = bench.problem(bench.Shape(5, 7, 3, 11), "float64")
    params, X, y = bench.torch_inputs(pb, requires_grad=True)
    loss = bench.torch_loss(dict(zip(bench.NAMES, params, strict=True)), X, y)
    loss.backward()
    assert float(bench.hand_loss(pb.params, pb.X, pb.y)) == pytest.approx(loss.item(), rel=1e-12)
    hand = bench.hand_gradients(pb.params, pb.X, pb.y)
    for name, p in zip(bench.NAMES, params, strict=True):
        assert p.grad is not None
        np.testing.assert_allclose(hand[name], p.grad.numpy(), rtol=1e-10, atol=1e-14, err_msg=name)


def test_the_custom_function_backward_is_the_hand_gradient(bench: Any) -> None:
    """What gradcheck sees: HandMLP's backward returns the planted hand gradient times grad_output."""
    pb = bench.problem(bench.Shape(4, 6, 3, 9), "float64")
    params, X, y = bench.torch_inputs(pb, requires_grad=True)
    (3.0 * bench.HandMLP.apply(*params, X, y, bench.planted("b1 x2"))).backward()
    planted = bench.planted("b1 x2")(pb.params, pb.X, pb.y)
    for name, p in zip(bench.NAMES, params, strict=True):
        assert p.grad is not None
        np.testing.assert_allclose(p.grad.numpy(), 3.0 * planted[name], rtol=1e-12, err_msg=name)


def test_quick_bench_writes_its_table(bench: Any, tmp_path: Path) -> None:
    out = tmp_path / "checker_bench.md"
    assert bench.main(["--quick", "--sizes", "100", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Machine: " in text and f"torch {torch.__version__}" in text and "CPUs" in text
    table = rows(text)
    assert set(table) == {(dtype, case) for dtype in ("float64", "float32") for case in CASES}
    for (dtype, case), row in table.items():
        assert row["params"] == "99" and row["fwd+bwd"].endswith(" ms")
        right = "pass" if case == "correct" else "FAIL"
        assert verdict(row["gradtwin check_gradients"]) == right, (dtype, case)
        assert row["gradtwin / fwd+bwd"].endswith("x")
        if dtype == "float64":
            assert verdict(row["torch gradcheck"]) == right, case
        assert verdict(row["gradcheck fast_mode"]) in ("pass", "FAIL", "pass (wrong)", "FAIL (wrong)")
        jax = row["jax check_grads rev"]
        assert jax == "not installed" or dtype == "float32" or verdict(jax) == right, case
    assert verdict(table[("float64", "sign flipped")]["gradcheck fast_mode"]) == "FAIL"
    for dtype in ("float64", "float32"):
        assert f"| gradtwin check_gradients | {dtype} | 5 of 5 | 0 | 0 |" in text


def test_budget_skips_the_exhaustive_gradcheck(bench: Any, tmp_path: Path) -> None:
    out = tmp_path / "checker_bench.md"
    argv = ["--sizes", "8-8-3@16", "--dtypes", "float64", "--tools", "gradcheck", "--budget", "0", "--out", str(out)]
    assert bench.main(argv) == 0
    table = rows(out.read_text())
    assert all(row["torch gradcheck"].startswith("skipped (est. ") for row in table.values())
    assert all("gradtwin check_gradients" not in row for row in table.values())  # only the tools asked for


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--tools", "gradtwin,nope"], "--tools"),
        (["--dtypes", "float16"], "--dtypes"),
        (["--sizes", "12345"], "--sizes"),
        (["--sizes", "8-x-3"], "--sizes"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    bench: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    out = tmp_path / "checker_bench.md"
    assert bench.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0]
    assert not out.exists()


def test_without_jax_its_column_says_not_installed(bench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "jax_version", lambda: None)
    out = tmp_path / "checker_bench.md"
    assert bench.main(["--sizes", "8-8-3@16", "--dtypes", "float64", "--tools", "jax", "--out", str(out)]) == 0
    text = out.read_text()
    assert "jax not installed" in text
    assert all(row["jax check_grads rev"] == "not installed" for row in rows(text).values())
