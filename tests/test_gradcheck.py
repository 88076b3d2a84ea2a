"""check_gradients on planted bugs: each diagnosis, the report's contents, errors, devices and TF32."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

import gradcheck_cases as cases
import gradtwin
from conftest import DTYPES, plant_in_gradients
from gradtwin.errors import UsageError
from gradtwin.models import MODELS
from gradtwin.parity.gradcheck import check_gradients, tf32_off
from gradtwin.parity.model_check import check_model


def linreg_problem(n: int = 12, d: int = 3, seed: int = 0) -> tuple[dict[str, np.ndarray], tuple[Any, Any]]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = X @ rng.standard_normal(d) + 0.3 * rng.standard_normal(n)
    return {"w": rng.standard_normal(d), "b": np.array(0.7)}, (X, Y)


def softmax_problem(d: int, k: int, seed: int = 1) -> tuple[dict[str, np.ndarray], tuple[Any, Any]]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((10, d))
    Y = np.eye(k)[rng.integers(0, k, 10)]
    return {"W": rng.standard_normal((d, k)), "b": rng.standard_normal(k)}, (X, Y)


def diagnosis(report: gradtwin.GradientReport, name: str) -> str:
    return next(p.diagnosis or "" for p in report.params if p.name == name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_correct_gradient_passes_with_every_field_filled(dtype: str) -> None:
    params, data = linreg_problem()
    report = gradtwin.check_gradients(cases.linreg_grad, cases.linreg_loss, params, data, dtype=dtype)
    assert report.ok, report.table()
    assert [p.name for p in report.params] == ["w", "b"]
    w = report.params[0]
    assert w.shape == (3,) and len(w.worst_index) == 1 and w.tol > 0
    assert w.abs_err <= w.tol
    assert np.isclose(w.hand, w.finite_diff, rtol=1e-4) and np.isclose(w.autograd, w.finite_diff, rtol=1e-4)
    comparisons = {c.comparison for c in w.checks}
    assert {"hand vs autograd", "hand float64 vs finite diff", "autograd float64 vs finite diff"} <= comparisons
    assert ("hand float32 vs float64" in comparisons) == (dtype == "float32")


@pytest.mark.parametrize(
    ("factor", "words"),
    [
        (-1.0, "opposite sign"),
        (2.0, "twice the true one"),
        (0.5, "half the true one"),
        ("n", "n = 12 times"),
        ("1/n", "1/n = 1/12 times"),
        (-2.0, "minus twice"),
    ],
)
def test_constant_factor_is_named(factor: Any, words: str) -> None:
    params, data = linreg_problem()
    report = check_gradients(cases.scaled(cases.linreg_grad, factor), cases.linreg_loss, params, data)
    assert not report.ok
    for name in ("w", "b"):
        assert words in diagnosis(report, name)
        assert "the hand-derived gradient is wrong" in diagnosis(report, name)


def test_transposed_square_gradient_is_named() -> None:
    params, data = softmax_problem(d=3, k=3)
    report = check_gradients(cases.transposed(cases.softmax_grad, "W"), cases.softmax_loss, params, data)
    assert not report.ok
    assert "matches the transpose" in diagnosis(report, "W")


def test_transposed_shape_is_named_even_when_values_agree() -> None:
    params, data = softmax_problem(d=2, k=3)
    report = check_gradients(cases.transposed(cases.softmax_grad, "W"), cases.softmax_loss, params, data)
    assert not report.ok
    assert "shape (3, 2), the transpose of W's shape (2, 3), and transposed back it agrees" in diagnosis(report, "W")


def test_one_parameter_wrong_is_named() -> None:
    params, data = linreg_problem()
    report = check_gradients(cases.one_wrong(cases.linreg_grad, "b"), cases.linreg_loss, params, data)
    assert [p.ok for p in report.params] == [True, False]
    assert "half the true one" in diagnosis(report, "b")
    assert any("w agree(s) but b do(es) not" in line for line in report.diagnoses)


def kink_problem() -> tuple[dict[str, np.ndarray], tuple[Any, Any]]:
    """A zero row of X and b1 = 0 put every hidden unit exactly at its ReLU kink for that row."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 2))
    X[3] = 0.0
    params = {"W1": rng.standard_normal((2, 3)), "b1": np.zeros(3), "w2": rng.standard_normal(3), "b2": np.array(0.3)}
    return params, (X, rng.standard_normal(10))


def test_kink_mismatch_is_named_and_can_be_allowed() -> None:
    params, data = kink_problem()
    report = check_gradients(cases.mlp_kink_bug, cases.mlp_loss, params, data)
    assert not report.ok
    assert "mismatch only at a kink" in diagnosis(report, "b1")
    assert [p.ok for p in report.params] == [True, False, True, True]
    allowed = check_gradients(cases.mlp_kink_bug, cases.mlp_loss, params, data, allow_kinks=True)
    assert allowed.ok and "accepted (allow_kinks)" in diagnosis(allowed, "b1")


def test_correct_relu_gradient_at_the_kink_passes() -> None:
    """Finite differences straddle the kink; the probe sees it, so the matching twins pass."""
    params, data = kink_problem()
    assert check_gradients(cases.mlp_grad, cases.mlp_loss, params, data).ok


def test_detached_torch_loss_is_blamed_on_autograd() -> None:
    params, data = linreg_problem()

    def detached(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        r = X @ p["w"] + p["b"] - Y
        return torch.mean(r * r.detach())  # half the gradient is cut off

    report = check_gradients(cases.linreg_grad, detached, params, data)
    assert not report.ok
    assert "autograd of torch_loss disagrees with finite differences" in diagnosis(report, "w")


def test_json_is_valid_without_nan() -> None:
    params, data = linreg_problem()
    report = check_gradients(cases.scaled(cases.linreg_grad, -1.0), cases.linreg_loss, params, data)
    report.params[0].checks[0].tol = float("inf")  # JSON has no infinity either
    text = report.to_json()
    assert "NaN" not in text and "Infinity" not in text
    data_ = json.loads(text)
    assert data_["ok"] is False and data_["params"][0]["name"] == "w"
    assert data_["params"][0]["checks"][0]["tol"] is None


def test_table_names_params_values_and_tolerance() -> None:
    params, data = linreg_problem()
    table = check_gradients(cases.scaled(cases.linreg_grad, 2.0), cases.linreg_loss, params, data).table()
    for word in ("param", "worst at", "hand", "autograd", "finite diff", "abs err", "rel err", "tolerance", "MISMATCH"):
        assert word in table
    assert "TF32" in table


def test_assert_form_raises_with_the_report() -> None:
    params, data = linreg_problem()
    gradtwin.assert_gradients_match(cases.linreg_grad, cases.linreg_loss, params, data)
    with pytest.raises(AssertionError, match="opposite sign"):
        gradtwin.assert_gradients_match(cases.scaled(cases.linreg_grad, -1.0), cases.linreg_loss, params, data)


def test_manual_loss_is_compared_first() -> None:
    params, data = linreg_problem()

    def manual_loss(p: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> float:
        return float(np.mean((X @ p["w"] + p["b"] - Y) ** 2))

    report = check_gradients(cases.linreg_grad, cases.linreg_loss, params, data, manual_loss=manual_loss)
    assert report.ok and report.checks()[0].name == "loss"
    wrong = check_gradients(
        cases.linreg_grad, cases.linreg_loss, params, data, manual_loss=lambda *a: 2 * manual_loss(*a)
    )
    assert not wrong.ok and not wrong.loss[0].ok


@pytest.mark.parametrize(
    ("grads", "message"),
    [
        (lambda p, X, Y: {"w": np.zeros(3)}, "missing ['b']"),
        (lambda p, X, Y: {"w": np.zeros(3), "b": 0.0, "c": 1.0}, "unexpected ['c']"),
        (lambda p, X, Y: {"w": np.zeros(4), "b": 0.0}, "must have the shape of params['w'], (3,); got (4,)"),
        (lambda p, X, Y: [0.0], "must return a dict"),
    ],
)
def test_bad_gradient_dict_is_one_clear_error(grads: Any, message: str) -> None:
    params, data = linreg_problem()
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        check_gradients(grads, cases.linreg_loss, params, data)


def test_non_scalar_loss_is_refused() -> None:
    params, data = linreg_problem()
    with pytest.raises(UsageError, match="scalar torch tensor"):
        check_gradients(cases.linreg_grad, lambda p, X, Y: X @ p["w"], params, data)


def test_tf32_is_off_inside_and_restored_after() -> None:
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        with tf32_off() as note:
            assert torch.get_float32_matmul_precision() == "highest"
            assert not torch.backends.cudnn.allow_tf32
            assert "switched off, then restored" in note
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


def test_mps_float64_is_refused_with_a_clear_message() -> None:
    params, data = linreg_problem()
    with pytest.raises(UsageError, match="mps' has no float64 support"):
        check_gradients(cases.linreg_grad, cases.linreg_loss, params, data, dtype="float64", device="mps")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_autograd_agrees_with_cpu(dtype: str) -> None:
    params, data = softmax_problem(d=4, k=3)
    report = check_gradients(cases.softmax_grad, cases.softmax_loss, params, data, dtype=dtype, device="cuda")
    assert report.ok, report.table()
    assert any(c.comparison.startswith("autograd cuda") for c in report.checks())


def test_builtin_model_check_runs_on_the_same_machinery() -> None:
    checks = check_model(MODELS["linear1d"], points=5, dtype="float32")
    assert all(c.ok for c in checks)
    assert {"manual vs autograd", "manual float32 vs float64", "manual float64 vs finite diff"} <= {
        c.comparison for c in checks
    }
    bugged = plant_in_gradients(MODELS["linear1d"], lambda grads, X: {k: -v for k, v in grads.items()})
    assert not all(c.ok for c in check_model(MODELS["linear1d"], points=3, manual_module=bugged))


def test_the_documented_example_runs_in_under_ten_lines() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("## Check your own gradients") :]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    assert len([line for line in code.splitlines() if line.strip()]) < 10
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["report"].ok


def test_integer_labels_stay_integers() -> None:
    """F.cross_entropy wants class indices: integer data reaches both functions as integers."""
    rng = np.random.default_rng(3)
    X, labels = rng.standard_normal((20, 3)), rng.integers(0, 4, 20)
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}

    def grads(p: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        assert y.dtype.kind == "i"
        return cases.softmax_grad(p, X, np.eye(4)[y])

    def loss(p: dict[str, torch.Tensor], X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(X @ p["W"] + p["b"], y)

    for dtype in DTYPES:
        assert check_gradients(grads, loss, params, (X, labels), dtype=dtype).ok
