"""Sample weights (a field of the Dataset): parity at drawn points, weights as repeated rows, a planted bug caught."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from conftest import DTYPES, MODEL_NAMES, WEIGHTED, caught, failures, plant
from gradtwin.data import Dataset
from gradtwin.errors import DataError, UsageError
from gradtwin.models import get_model
from gradtwin.parity.model_check import check_model, random_problem
from gradtwin.parity.rounding import tolerance
from gradtwin.parity.scales import gradient_scale, loss_scale, rounding_terms


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", WEIGHTED)
def test_weighted_twins_agree_at_drawn_points(name: str, dtype: str) -> None:
    """manual vs autograd, float32 vs float64, and finite differences, at random data, weights and points."""
    checks = check_model(get_model(name), points=25, dtype=dtype, seed=3, weighted=True)
    bad = failures(checks)
    assert not bad, bad[0]


@pytest.mark.parametrize("name", WEIGHTED)
def test_integer_weights_are_repeated_rows(name: str) -> None:
    """sum_i v_i l_i / sum_i v_i with integer v is the plain mean over rows repeated v_i times.

    The two are the same sum in a different order and grouping: each is within gamma(K) * scale
    of the exact value, so they differ by at most twice that.
    """
    model = get_model(name)
    rng = np.random.default_rng(5)
    for _ in range(10):
        params, plain = random_problem(model, rng)
        v = rng.integers(0, 4, plain.n)
        v[0] = 1
        data = replace(plain, weight=v)
        repeated = Dataset(np.repeat(plain.X, v, axis=0), np.repeat(plain.Y, v), "repeated")
        K = max(rounding_terms(model, data.X, params, data.weight), rounding_terms(model, repeated.X, params))
        a = model.manual.gradients(params, data.X, data.Y, weight=data.weight)
        b = model.manual.gradients(params, repeated.X, repeated.Y)
        scale = gradient_scale(model, params, repeated.X, repeated.Y)
        for k in params:
            assert np.all(np.abs(a[k] - b[k]) <= 2 * tolerance(np.float64, K, scale[k])), k
        loss_tol = 2 * tolerance(np.float64, K, loss_scale(model, params, repeated.X, repeated.Y))
        loss_a = model.manual.loss(params, data.X, data.Y, weight=data.weight)
        assert abs(loss_a - model.manual.loss(params, repeated.X, repeated.Y)) <= loss_tol


@pytest.mark.parametrize("name", WEIGHTED)
def test_a_twin_that_ignores_the_weights_is_caught(name: str) -> None:
    model = get_model(name)
    rng = np.random.default_rng(0)
    params, data = random_problem(model, rng)
    data = replace(data, weight=np.where(np.arange(data.n) % 2 == 0, 1.0, 5.0))
    ignoring = plant(model, gradients=lambda params, X, Y, weight=None: model.manual.gradients(params, X, Y))
    assert caught(model, params, data, ignoring)  # the real twin passes, the one ignoring the weights does not


def test_the_weighted_hessian_is_that_of_the_weights() -> None:
    """The linear model's stable_lr(X, v) is 2 / lambda_max(2 A.T diag(v) A / sum v); stable_lr(X) is unweighted."""
    rng = np.random.default_rng(1)
    X, v = rng.standard_normal((30, 2)) * [1.0, 10.0], rng.uniform(0, 3, 30)
    A = np.hstack([X, np.ones((30, 1))])  # (n, 3)
    lam = np.linalg.eigvalsh(2 * A.T @ (v[:, None] * A) / v.sum())[-1]
    # two roundings of the same H differ elementwise by 2 gamma(K) * sum|terms|; an eigenvalue
    # moves by at most the 2-norm of the difference, below its Frobenius norm
    dH = 2 * tolerance(np.float64, 30, 2 * np.abs(A).T @ (v[:, None] * np.abs(A)) / v.sum())
    model = get_model("linear")
    stable = model.stable_lr(X, v)
    assert stable is not None and abs(2.0 / stable - lam) <= np.linalg.norm(dH)
    # without the weights, the unweighted Hessian 2/n A.T A, and a different step
    lam_plain = np.linalg.eigvalsh(2 * A.T @ A / 30)[-1]
    dH_plain = 2 * tolerance(np.float64, 30, 2 * np.abs(A).T @ np.abs(A) / 30)
    plain = model.stable_lr(X)
    assert plain is not None and abs(2.0 / plain - lam_plain) <= np.linalg.norm(dH_plain)
    assert abs(2.0 / plain - lam) > np.linalg.norm(dH)  # the weights do change the Hessian here
    # the weights travel with the data: a Dataset whose weights do not match its rows is refused
    Y = rng.standard_normal(30)
    with pytest.raises(DataError, match=r"weight must have shape \(29,\), one per row; got shape \(30,\)"):
        Dataset(X[1:], Y[1:], "drawn", weight=v)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_only_models_whose_twins_take_weights_accept_weighted_data(name: str) -> None:
    model = get_model(name)
    data = model.random_data(np.random.default_rng(2))
    weighted = replace(data, weight=np.ones(data.n))
    if name in WEIGHTED:
        model.check_data(weighted)
        return
    with pytest.raises(UsageError, match=rf"weights are supported for linear, logistic, softmax; got model '{name}'"):
        model.check_data(weighted)
