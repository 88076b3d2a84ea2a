"""The checker at scale: the sampled method, its sketch and bounds, torch hand gradients, half precision."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

import gradtwin
from conftest import DTYPES
from gradtwin.errors import UsageError
from gradtwin.parity import gradcheck, sketch
from gradtwin.parity.autograd_scales import autograd_scales
from gradtwin.parity.gradcheck import autograd_gradients, check_gradients
from gradtwin.parity.rounding import WORST_CASE_LIMIT, gamma, rounding_bound, unit_roundoff

CPU = torch.device("cpu")


def mlp_problem(n: int, d: int, h: int, k: int, seed: int = 0) -> tuple[dict[str, np.ndarray], tuple[Any, Any]]:
    """A tanh network with a softmax output: W1 (d, h), b1 (h,), W2 (h, k), b2 (k,); Y class indices."""
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((n, d)), rng.integers(0, k, n)
    params = {
        "W1": rng.standard_normal((d, h)) / math.sqrt(d),
        "b1": 0.1 * rng.standard_normal(h),
        "W2": rng.standard_normal((h, k)) / math.sqrt(h),
        "b2": 0.1 * rng.standard_normal(k),
    }
    return params, (X, Y)


def mlp_loss(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(torch.tanh(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"], Y)


def mlp_grad(p: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
    """Mean cross-entropy of softmax(tanh(X W1 + b1) W2 + b2), by hand, in NumPy or torch alike.

    Chain::  dZ = (softmax(Z) - onehot(Y)) / n      (n, k)
             dH = (dZ @ W2.T) * (1 - A^2)          (n, h)
             dW2 = A.T @ dZ, db2 = sum_i dZ ; dW1 = X.T @ dH, db1 = sum_i dH
    """
    n = X.shape[0]
    A = np.tanh(X @ p["W1"] + p["b1"]) if isinstance(X, np.ndarray) else torch.tanh(X @ p["W1"] + p["b1"])
    Z = A @ p["W2"] + p["b2"]
    if isinstance(Z, np.ndarray):
        P = np.exp(Z - Z.max(1, keepdims=True))
        dZ = P / P.sum(1, keepdims=True)
        dZ[np.arange(n), Y] -= 1.0
    else:
        dZ = torch.softmax(Z, dim=1)
        dZ[torch.arange(n, device=Z.device), Y] -= 1.0
    dZ = dZ / n
    dH = (dZ @ p["W2"].T) * (1 - A**2)
    return {"W1": X.T @ dH, "b1": dH.sum(0), "W2": A.T @ dZ, "b2": dZ.sum(0)}


def planted(change: Any) -> Any:
    def bugged(p: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
        g = {k: v.copy() for k, v in mlp_grad(p, X, Y).items()}
        change(g)
        return g

    return bugged


def diagnosis(report: gradtwin.GradientReport, name: str) -> str:
    return next(p.diagnosis or "" for p in report.params if p.name == name)


# ---------------------------------------------------------------- the bounds


def test_worst_case_bound_until_it_stops_being_tight_then_probabilistic() -> None:
    for dtype in ("float64", "float32", "float16", "bfloat16"):
        u = unit_roundoff(dtype)
        k_last = int(WORST_CASE_LIMIT / u)
        below, above = rounding_bound(dtype, k_last), rounding_bound(dtype, k_last + 2)
        if k_last >= 1:
            assert (
                below.kind == "worst case" and below.gamma == pytest.approx(gamma(k_last, dtype)) and below.failure == 0
            )
        assert above.kind == "probabilistic" and 0 < above.failure <= 1e-6
        # lambda solves 2 K outputs exp(-lambda^2 (1-u)^2 / 2) = failure
        k = k_last + 2
        assert 2 * k * math.exp(-((above.lam * (1 - u)) ** 2) / 2) == pytest.approx(above.failure, rel=1e-9)
        assert above.gamma == pytest.approx(math.expm1(above.lam * math.sqrt(k) * u + k * u * u / (1 - u)))


def test_probabilistic_bound_grows_like_sqrt_k_and_with_the_outputs() -> None:
    a, b = rounding_bound("float32", 10**6), rounding_bound("float32", 4 * 10**6)
    assert 1.9 < b.gamma / a.gamma < 2.3  # sqrt(4) times a slowly growing lambda
    assert rounding_bound("float32", 10**6, outputs=10**6).gamma > a.gamma
    assert a.gamma < gamma(10**6, "float32") / 50  # far below the worst case there


def test_bfloat16_bound_is_meaningless_beyond_a_few_hundred_terms_and_the_report_says_so() -> None:
    assert 2 * rounding_bound("bfloat16", 100, 100).gamma < 1 < 2 * rounding_bound("bfloat16", 1000, 1000).gamma
    params, data = mlp_problem(40, 10, 8, 3)
    tparams = {k: torch.tensor(v) for k, v in params.items()}
    report = check_gradients(mlp_grad, mlp_loss, tparams, (torch.tensor(data[0]), torch.tensor(data[1])),
                             dtype="bfloat16")  # fmt: skip
    assert any("no wrong gradient can be told from rounding" in n for n in report.notes)


# ---------------------------------------------------------------- the sketch


@pytest.mark.parametrize("seed", range(4))
def test_sketch_is_above_the_exact_scale_and_not_wildly(seed: int) -> None:
    params, data = mlp_problem(12, 5, 4, 3, seed)
    K = sum(v.size for v in params.values()) + sum(np.size(x) for x in data)
    exact, _ = autograd_scales(mlp_loss, params, data, K)
    g0 = autograd_gradients(mlp_loss, params, data, "float64", CPU)[1]
    S = sketch.sketch_scales(lambda p, d: autograd_gradients(mlp_loss, p, d, "float64", CPU)[1], params, data, g0, seed)
    ratio = np.concatenate([(S[k] / exact[k]).ravel() for k in exact])
    assert ratio.min() >= 1.0  # fails with probability 1e-6 per element
    assert 5 < np.median(ratio) < 200  # 32 at the median by construction


def test_sketch_miss_probability_is_what_the_docstring_says() -> None:
    q = (2 / math.pi) * math.atan(1 / sketch.FACTOR)
    assert sketch.MISS == pytest.approx(6 * q**5 * (1 - q) + q**6)
    assert sketch.MISS <= 1.01e-6
    # Monte Carlo of the estimator on |Cauchy| draws: the second largest of six, times FACTOR
    rng = np.random.default_rng(0)
    draws = np.abs(rng.standard_cauchy((200_000, sketch.DRAWS)))
    estimate = sketch.FACTOR * np.sort(draws, axis=1)[:, -2]
    assert np.mean(estimate < 1.0) < 2e-5
    assert 25 < np.median(estimate) < 40


# ---------------------------------------------------------------- the sampled method


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_correct_network_passes_sampled(dtype: str, device: str) -> None:
    params, data = mlp_problem(64, 60, 50, 10)  # 3,560 parameters: above EXHAUSTIVE_MAX
    report = check_gradients(mlp_grad, mlp_loss, params, data, dtype=dtype, device=device)
    assert report.method == "sampled" and report.ok, report.table()
    assert len(report.directions) == 2 and all(c.ok and c.name == "all" for c in report.directions)
    # the parameters are looked at one by one only where the projection of all disagrees
    assert not [c for p in report.params for c in p.checks if "random direction" in c.comparison]
    assert any("method: sampled" in n for n in report.notes)


def test_method_auto_is_exhaustive_for_small_problems() -> None:
    params, data = mlp_problem(8, 3, 4, 2)
    assert check_gradients(mlp_grad, mlp_loss, params, data).method == "exhaustive"
    assert check_gradients(mlp_grad, mlp_loss, params, data, method="sampled").method == "sampled"
    with pytest.raises(UsageError, match="method must be one of auto, exhaustive, sampled; got 'fast'"):
        check_gradients(mlp_grad, mlp_loss, params, data, method="fast")


def _at(name: str, index: tuple[int, ...], factor: float) -> Any:
    def change(g: dict[str, Any]) -> None:
        g[name][index] *= factor

    return change


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_at("W1", (3, 7), 2.0), "only one element, [3, 7], is wrong"),
        (lambda g: g["W1"].__setitem__(5, 2 * g["W1"][5]), "only row 5 is wrong"),
        (lambda g: g["W2"].__setitem__((slice(None), 4), 0.5 * g["W2"][:, 4]), "only column 4 is wrong"),
        (lambda g: g["W1"].__setitem__((slice(2, 6), slice(10, 14)), -g["W1"][2:6, 10:14]), "block [2:6, 10:14]"),
        (lambda g: g.__setitem__("W1", -g["W1"]), "opposite sign"),
        (lambda g: g.__setitem__("b1", 2 * g["b1"]), "twice the true one"),
    ],
)
def test_large_tensor_mistakes_are_caught_located_and_listed(change: Any, words: str, dtype: str) -> None:
    params, data = mlp_problem(64, 60, 50, 10)
    report = check_gradients(planted(change), mlp_loss, params, data, dtype=dtype)
    assert not report.ok, report.table()
    bad = next(p for p in report.params if not p.ok)
    assert words in (bad.diagnosis or ""), report.table()
    assert 0 < len(bad.worst) <= 5 and bad.n_bad >= len(bad.worst)
    assert f"elements of {bad.name} disagree" in report.table()
    assert report.table().count("\n") < 40  # the worst elements, not thousands of rows


def test_one_small_wrong_element_is_caught_in_float64_at_scale() -> None:
    """The element moves by 1e-6 of its size, 8e-10: a tolerance 100 times too loose would pass it."""
    params, data = mlp_problem(64, 60, 50, 10)
    report = check_gradients(planted(_at("W1", (11, 3), 1 + 1e-6)), mlp_loss, params, data)
    assert not report.ok and "[11, 3]" in diagnosis(report, "W1"), report.table()
    W1 = report.params[0]
    assert 1 < W1.abs_err / W1.tol < 1000


def test_a_detached_path_in_the_loss_is_caught_along_the_random_direction() -> None:
    params, data = mlp_problem(64, 60, 50, 10)

    def detached(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        A = torch.tanh(X @ p["W1"].detach() + p["b1"])  # W1's gradient is lost
        return torch.nn.functional.cross_entropy(A @ p["W2"] + p["b2"], Y)

    report = check_gradients(mlp_grad, detached, params, data)
    assert not report.ok
    W1 = report.params[0]
    assert not W1.ok and "autograd of torch_loss disagrees with finite differences" in (W1.diagnosis or "")
    assert not next(c for c in W1.checks if c.comparison.startswith("autograd") and "direction" in c.comparison).ok


# ---------------------------------------------------------------- honest rows


def _cases() -> list[gradtwin.GradientReport]:
    small, data_s = mlp_problem(8, 3, 4, 2)
    large, data_l = mlp_problem(64, 60, 50, 10)
    half = planted(lambda g: [g.__setitem__(k, 0.5 * v) for k, v in list(g.items())])
    return [
        check_gradients(mlp_grad, mlp_loss, small, data_s, dtype="float32"),
        check_gradients(half, mlp_loss, small, data_s),
        check_gradients(half, mlp_loss, large, data_l, dtype="float32"),
        check_gradients(planted(_at("W1", (1, 1), -3.0)), mlp_loss, large, data_l),
    ]


def test_every_row_describes_one_element_and_ok_agrees_with_its_numbers() -> None:
    for report in _cases():
        for p in report.params:
            worst = next(c for c in p.checks if c.comparison == p.comparison)
            assert worst.worst_index == p.worst_index
            assert p.abs_err == pytest.approx(abs(worst.a - worst.b))
            assert p.tol == worst.tol
            assert p.ok == (p.abs_err <= p.tol), (p.name, report.table())
            assert p.ok == all(c.ok for c in p.checks)


def test_relative_error_is_against_the_gradients_own_scale() -> None:
    """Gradients that are all exactly half are 50 % wrong at most, never 'rel err 8.26'."""
    report = _cases()[1]
    assert not report.ok
    assert all(p.rel_err <= 0.5 + 1e-9 for p in report.params), report.table()
    assert all("half the true one" in (p.diagnosis or "") for p in report.params)


# ---------------------------------------------------------------- hand gradients in torch


def torch_problem(dtype: torch.dtype = torch.float32) -> tuple[dict[str, torch.Tensor], tuple[Any, Any]]:
    params, (X, Y) = mlp_problem(16, 4, 5, 3)
    return {k: torch.tensor(v, dtype=dtype) for k, v in params.items()}, (torch.tensor(X, dtype=dtype), torch.tensor(Y))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_torch_hand_gradients_are_detected_and_run_in_their_dtype_and_device(dtype: str, device: str) -> None:
    if device == "cuda" and dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    params, data = torch_problem()
    seen = []

    def hand(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> dict[str, torch.Tensor]:
        seen.append((type(X), X.dtype, X.device.type))
        return mlp_grad(p, X, Y)

    report = check_gradients(hand, mlp_loss, params, data, dtype=dtype, device=device)
    assert report.ok, report.table()
    assert seen[0] == (torch.Tensor, getattr(torch, dtype), device)
    bad = check_gradients(_negated(hand), mlp_loss, params, data, dtype=dtype, device=device)
    assert not bad.ok and "opposite sign" in diagnosis(bad, "W2"), bad.table()


def _negated(hand: Any) -> Any:
    def bugged(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> dict[str, torch.Tensor]:
        g = hand(p, X, Y)
        return {**g, "W2": -g["W2"]}

    return bugged


def test_torch_hand_gradient_in_another_dtype_is_refused() -> None:
    params, data = torch_problem()

    def wrong_dtype(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.double() for k, v in mlp_grad(p, X, Y).items()}

    with pytest.raises(UsageError, match=r"manual_gradients\(\)\['W1'\] must be a tensor of dtype torch.float32 on "
                                         r"cpu, like its inputs; got torch.float64 on cpu"):  # fmt: skip
        check_gradients(wrong_dtype, mlp_loss, params, data, dtype="float32")


def test_torch_hand_gradient_on_another_device_is_refused() -> None:
    params, data = torch_problem()

    def elsewhere(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.to("meta") for k, v in mlp_grad(p, X, Y).items()}

    with pytest.raises(UsageError, match=r"must be a tensor of dtype torch.float32 on cpu, like its inputs; got "
                                         r"torch.float32 on meta"):  # fmt: skip
        check_gradients(elsewhere, mlp_loss, params, data, dtype="float32")


def test_torch_hand_code_returning_numpy_is_refused() -> None:
    params, data = torch_problem()

    def numpy_out(p: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor) -> dict[str, Any]:
        return {k: v.numpy() for k, v in mlp_grad(p, X, Y).items()}

    with pytest.raises(UsageError, match=r"manual_gradients\(\)\['W1'\] must be a torch tensor .* got ndarray"):
        check_gradients(numpy_out, mlp_loss, params, data, dtype="float32")


def test_bfloat16_with_numpy_hand_code_is_refused_with_what_to_do() -> None:
    params, data = mlp_problem(8, 3, 4, 2)
    with pytest.raises(UsageError, match="dtype 'bfloat16' has no NumPy type: pass params as torch tensors"):
        check_gradients(mlp_grad, mlp_loss, params, data, dtype="bfloat16")


def test_float16_overflow_is_a_clear_error_not_a_nan() -> None:
    params, (X, Y) = mlp_problem(8, 3, 4, 2)
    with pytest.raises(UsageError, match=r"torch_loss in float16 is (inf|nan): a value overflows float16's range"):
        check_gradients(mlp_grad, lambda p, X, Y: 1e6 * mlp_loss(p, X, Y), params, (X, Y), dtype="float16")


def test_inputs_beyond_float16s_range_are_refused() -> None:
    params, (X, Y) = mlp_problem(8, 3, 4, 2)
    with pytest.raises(UsageError, match=r"data\[0\] holds values up to 100000, beyond float16's range \(65504\)"):
        check_gradients(mlp_grad, mlp_loss, params, (1e5 * np.sign(X), Y), dtype="float16")


def test_unknown_dtype_names_the_choices() -> None:
    params, data = mlp_problem(8, 3, 4, 2)
    with pytest.raises(UsageError, match="dtype must be one of float32, float64, float16, bfloat16; got 'half'"):
        check_gradients(mlp_grad, mlp_loss, params, data, dtype="half")


def test_exhaustive_limit_is_where_the_docs_say() -> None:
    assert gradcheck.EXHAUSTIVE_MAX == 1000


def test_model_check_table_rows_describe_one_element_each() -> None:
    """`gradtwin check --model` rows: ok is 'abs err <= tolerance' at the element shown."""
    from gradtwin.models import MODELS
    from gradtwin.parity.compare import format_table, worst
    from gradtwin.parity.model_check import check_model

    checks = worst(check_model(MODELS["mlp"], 3, "float32", "cpu", 0))
    for c in checks:
        assert c.ok == (c.worst_err <= c.tol), c
        assert c.worst_err == pytest.approx(abs(c.a - c.b))
    header = format_table(checks).splitlines()[0].split()
    assert header[:7] == ["comparison", "param", "ok", "worst", "at", "abs", "err"]
