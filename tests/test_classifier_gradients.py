"""Gradient parity of the classifiers' twins (logistic, softmax, mlp): random points, extremes, planted bugs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import CLASSIFIERS, DEVICES, DTYPES, assert_parity, caught, plant, twin_values
from gradtwin.data import Dataset
from gradtwin.models import MODELS, Model, mlp
from gradtwin.parity.model_check import _away_from_relu_kink, random_problem


def _model_at(name: str, hidden: int) -> Model:
    """The registered model; for the mlp the same activation at the drawn hidden width."""
    model = MODELS[name]
    return mlp(hidden, model.options["activation"]) if "activation" in model.options else model


def _problem(
    name: str, seed: int, n: int, d: int, k: int, hidden: int, x_exp: float, p_exp: float
) -> tuple[Model, dict[str, np.ndarray], Dataset]:
    """Features at 10^x_exp and standard-normal parameters at 10^p_exp, all seeded."""
    model = _model_at(name, hidden)
    rng = np.random.default_rng(seed)
    k = 2 if name == "logistic" else k
    X = 10.0**x_exp * (rng.standard_normal((n, d)) + rng.standard_normal(d))  # (n, d)
    Y = rng.integers(0, k, size=n).astype(np.int64)  # (n,)
    Y[0] = k - 1  # the shapes are read from the largest label
    data = Dataset(X, Y, name="drawn")
    params = {p: 10.0**p_exp * rng.standard_normal(s) for p, s in model.param_shapes(data).items()}
    return model, params, data


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CLASSIFIERS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 25),
    d=st.integers(1, 4),
    k=st.integers(2, 4),
    hidden=st.integers(1, 4),
    x_exp=st.floats(-1.0, 2.0),
    p_exp=st.floats(-2.0, 2.0),
)
def test_twins_agree_at_drawn_points(
    name: str, dtype: str, device: str, seed: int, n: int, d: int, k: int, hidden: int, x_exp: float, p_exp: float
) -> None:
    """Loss and every gradient: twin vs twin, float32 vs float64, float64 vs finite differences.

    Logits reach 1e2 * 1e2 * 4 and beyond, so saturated sigmoids and one-hot softmaxes are
    drawn too. The relu mlp is drawn away from its kink (finite differences across it are
    meaningless), not given a looser tolerance.
    """
    model, params, data = _problem(name, seed, n, d, k, hidden, x_exp, p_exp)
    if name == "mlp-relu":
        assume(_away_from_relu_kink(params, data))
    assert_parity(model, params, data, dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_registered_random_problems_pass(name: str, dtype: str) -> None:
    """What `gradtwin check` draws (the registered widths, extreme features one draw in four) passes."""
    model = MODELS[name]
    rng = np.random.default_rng(7)
    for point in range(4):
        params, data = random_problem(model, rng)
        assert_parity(model, params, data, dtype, point=point)


def test_relu_kink_rule_rejects_a_pre_activation_at_zero() -> None:
    """The admissibility rule is what keeps finite differences off the kink: A = 0 must fail it."""
    _, params, data = _problem("mlp-relu", 3, 6, 2, 3, 3, 0.0, 0.0)
    params["b1"][1] = -(data.X[2] @ params["W1"][:, 1])  # A[2, 1] = 0 exactly (up to rounding)
    assert not _away_from_relu_kink(params, data)
    # `random_problem` applies the rule: draws like its own but unfiltered do come near the kink, its never
    relu, rng, unfiltered = MODELS["mlp-relu"], np.random.default_rng(0), []
    for _ in range(50):
        drawn, scale = relu.random_data(rng), 10.0 ** rng.uniform(-2, 2)
        point = {p: scale * rng.standard_normal(s) for p, s in relu.param_shapes(drawn).items()}
        unfiltered.append(_away_from_relu_kink(point, drawn))
    assert not all(unfiltered), "no unfiltered draw came near the kink: the check below would prove nothing"
    rng = np.random.default_rng(0)
    assert all(_away_from_relu_kink(*random_problem(relu, rng)) for _ in range(50))


# ---- extreme logits -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("magnitude", [1e3, 1e5, 1e30])
def test_logistic_extreme_logits_are_exact(magnitude: float, dtype: str) -> None:
    """Logits +-M: a right answer costs 0, a wrong one M; dL/dz = (sigma(z) - y)/n is 0 or +-1/n."""
    X = np.array([[1.0], [-1.0], [1.0], [-1.0]])  # (4, 1)
    Y = np.array([1, 0, 0, 1], dtype=np.int64)  # z = +M, -M, +M, -M: right, right, wrong, wrong
    params = {"w": np.array([magnitude]), "b": np.array(0.0)}
    for loss, grads in twin_values(MODELS["logistic"], params, Dataset(X, Y, "extreme"), dtype):
        M = float(np.asarray(magnitude, dtype=dtype))
        assert loss == pytest.approx(2 * M / 4, rel=1e-6)
        assert grads["w"] == pytest.approx([(1.0 + 1.0) / 4])  # X_i (sigma - y)/n: 1*1/4 + (-1)(-1)/4
        assert grads["b"] == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("magnitude", [1e3, 1e5, 1e30])
def test_softmax_extreme_logits_are_exact(magnitude: float, dtype: str) -> None:
    """Z = +-M * I: the right class costs 0, a wrong one 2M; dL/dZ = (onehot(argmax) - onehot(y))/n."""
    X = np.eye(3)  # (3, 3): sample i has logit +M for class i, -M for the rest
    Y = np.array([0, 1, 0], dtype=np.int64)  # right, right, wrong
    params = {"W": magnitude * (2 * np.eye(3) - 1), "b": np.zeros(3)}
    dW = np.zeros((3, 3))
    dW[2, 2], dW[2, 0] = 1 / 3, -1 / 3  # only sample 2 is wrong: P = e_2, onehot = e_0
    for loss, grads in twin_values(MODELS["softmax"], params, Dataset(X, Y, "extreme"), dtype):
        M = float(np.asarray(magnitude, dtype=dtype))
        assert loss == pytest.approx(2 * M / 3, rel=1e-6)
        np.testing.assert_allclose(grads["W"], dW, atol=1e-7)
        np.testing.assert_allclose(grads["b"], dW.sum(axis=0), atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["mlp", "mlp-relu", "mlp-sigmoid"])
@pytest.mark.parametrize("magnitude", [1e3, 1e6])
def test_mlp_extreme_logits_are_finite_and_agree(name: str, magnitude: float, dtype: str) -> None:
    """Output weights of +-M give logits of order M: finite losses and gradients, twins in parity."""
    model = mlp(3, MODELS[name].options["activation"])
    rng = np.random.default_rng(1)
    data = Dataset(rng.standard_normal((8, 2)), np.array([0, 1, 2, 0, 1, 2, 0, 1], dtype=np.int64), "extreme")
    params = {
        "W1": rng.standard_normal((2, 3)),
        "b1": rng.standard_normal(3),
        "W2": magnitude * rng.standard_normal((3, 3)),
        "b2": magnitude * rng.standard_normal(3),
    }
    if name == "mlp-relu":
        assert _away_from_relu_kink(params, data)
    for loss, grads in twin_values(model, params, data, dtype):
        assert np.isfinite(loss) and loss > magnitude / 100  # some samples are wrong by ~M
        assert all(np.isfinite(g).all() for g in grads.values())
    assert_parity(model, params, data, dtype)


# ---- planted bugs -----------------------------------------------------------------------------

BUGS = ("transposed weight", "lost 1/n", "sign flip", "dropped bias")
WEIGHT = {"logistic": "w", "softmax": "W", "mlp": "W2"}
BIAS = {"logistic": "b", "softmax": "b", "mlp": "b1"}


def _square_problem(name: str) -> tuple[Model, dict[str, np.ndarray], Dataset]:
    """Shapes where a transposed weight gradient still has the right shape, so only parity can catch it.

    logistic: n == d (X @ dz has shape (d,)); softmax: d == k; mlp: h == k (W2 is square).
    """
    rng = np.random.default_rng(11)
    model = MODELS[name] if name != "mlp" else mlp(3, "tanh")
    n, d = (4, 4) if name == "logistic" else (9, 3)
    Y = np.arange(n, dtype=np.int64) % (2 if name == "logistic" else 3)  # (n,) every class present
    data = Dataset(rng.standard_normal((n, d)), Y, "planted")
    params = {p: rng.standard_normal(s) for p, s in model.param_shapes(data).items()}
    return model, params, data


def _buggy_gradients(model: Model, name: str, bug: str) -> Any:
    """The manual twin's gradients with `bug` written into them."""
    correct = model.manual.gradients

    def gradients(params: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
        grads = dict(correct(params, X, Y))
        n, w, b = X.shape[0], WEIGHT[name], BIAS[name]
        if bug == "transposed weight" and name == "logistic":
            z = model.manual.logits(params, X)  # (n,)
            s = 1.0 - 2.0 * Y.astype(z.dtype)
            grads[w] = X @ (s * model.manual.sigmoid(s * z) / n)  # X, not X.T
        elif bug == "transposed weight":
            grads[w] = grads[w].T  # dW2 = (H.T @ dZ).T = dZ.T @ H
        elif bug == "lost 1/n":
            grads = {k: n * v for k, v in grads.items()}
        elif bug == "sign flip":
            grads[w] = -grads[w]
        elif bug == "dropped bias":
            grads[b] = 0.0 * grads[b]
        return grads

    return gradients


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bug", BUGS)
@pytest.mark.parametrize("name", ["logistic", "softmax", "mlp"])
def test_planted_bug_is_caught(name: str, bug: str, dtype: str) -> None:
    """Each bug makes manual vs autograd and manual vs finite differences fail on the parameter it touches."""
    model, params, data = _square_problem(name)
    planted = plant(model, gradients=_buggy_gradients(model, name, bug))
    failed = caught(model, params, data, planted, dtype)  # the correct twin passes here first
    touched = {BIAS[name]} if bug == "dropped bias" else {WEIGHT[name]}
    for param in touched:
        assert ("manual vs autograd", param) in failed
        assert ("manual float64 vs finite diff", param) in failed
