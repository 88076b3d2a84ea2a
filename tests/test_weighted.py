"""Sample-weighted twins: parity with finite differences, weights as repeated rows, a planted bug caught."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from gradtwin.parity.model_check import check_model, check_point
from gradtwin.parity.scales import rounding_terms
from gradtwin.data import Dataset
from gradtwin.errors import UsageError
from gradtwin.models import get_model
from gradtwin.parity.rounding import tolerance
from gradtwin.weighted import WEIGHTED, targets, weighted, with_weights


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", WEIGHTED)
def test_weighted_twins_agree_at_drawn_points(name: str, dtype: str) -> None:
    """manual vs autograd, float32 vs float64, and finite differences, at random data, weights and points."""
    checks = check_model(weighted(get_model(name)), points=25, dtype=dtype, seed=3)
    bad = [c for c in checks if not c.ok]
    assert not bad, bad[0]


@pytest.mark.parametrize("name", WEIGHTED)
def test_integer_weights_are_repeated_rows(name: str) -> None:
    """sum_i v_i l_i / sum_i v_i with integer v is the plain mean over rows repeated v_i times.

    The two are the same sum in a different order and grouping: each is within gamma(K) * scale
    of the exact value, so they differ by at most twice that.
    """
    model, wmodel = get_model(name), weighted(get_model(name))
    rng = np.random.default_rng(5)
    for _ in range(10):
        params, data = wmodel.random_problem(rng)
        v = rng.integers(0, 4, data.n)
        v[0] = 1
        data = with_weights(targets(data, model.task == "classification"), v)
        plain = targets(data, model.task == "classification")
        repeated = Dataset(np.repeat(plain.X, v, axis=0), np.repeat(plain.Y, v), "repeated")
        K = max(rounding_terms(wmodel, data, params), rounding_terms(model, repeated, params))
        a = wmodel.manual.gradients(params, data.X, data.Y)
        b = model.manual.gradients(params, repeated.X, repeated.Y)
        scale = model.manual.gradient_scale(params, repeated.X, repeated.Y)
        for k in params:
            assert np.all(np.abs(a[k] - b[k]) <= 2 * tolerance(np.float64, K, scale[k])), k
        loss_tol = 2 * tolerance(np.float64, K, model.manual.loss_scale(params, repeated.X, repeated.Y))
        loss_a = wmodel.manual.loss(params, data.X, data.Y)
        assert abs(loss_a - model.manual.loss(params, repeated.X, repeated.Y)) <= loss_tol


def _ignoring_weights(name: str) -> ModuleType:
    """The weighted manual twin with the bug of dropping the weights from the gradients."""
    model, wmodel = get_model(name), weighted(get_model(name))
    labels = model.task == "classification"

    def gradients(params: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
        target = Y[:, 0].astype(np.int64) if labels else Y[:, 0]
        return model.manual.gradients(params, X, target)

    twin = SimpleNamespace(**vars(wmodel.manual))
    twin.gradients = gradients
    return twin  # type: ignore[return-value]


@pytest.mark.parametrize("name", WEIGHTED)
def test_a_twin_that_ignores_the_weights_is_caught(name: str) -> None:
    wmodel = weighted(get_model(name))
    rng = np.random.default_rng(0)
    params, data = wmodel.random_problem(rng)
    v = np.where(np.arange(data.n) % 2 == 0, 1.0, 5.0)
    data = with_weights(targets(data, wmodel.task == "classification"), v)
    assert all(c.ok for c in check_point(wmodel, params, data))
    assert not all(c.ok for c in check_point(wmodel, params, data, manual_module=_ignoring_weights(name)))


def test_the_weighted_hessian_is_bound_to_its_weights() -> None:
    """stable_lr of a weighted linear model is 2 / lambda_max(2 A.T diag(v) A / sum v); other rows are refused."""
    rng = np.random.default_rng(1)
    X, v = rng.standard_normal((30, 2)) * [1.0, 10.0], rng.uniform(0, 3, 30)
    A = np.hstack([X, np.ones((30, 1))])  # (n, 3)
    lam = np.linalg.eigvalsh(2 * A.T @ (v[:, None] * A) / v.sum())[-1]
    # two roundings of the same H differ elementwise by 2 gamma(K) * sum|terms|; an eigenvalue
    # moves by at most the 2-norm of the difference, below its Frobenius norm
    dH = 2 * tolerance(np.float64, 30, 2 * np.abs(A).T @ (v[:, None] * np.abs(A)) / v.sum())
    stable = weighted(get_model("linear"), v).stable_lr(X)
    assert stable is not None and abs(2.0 / stable - lam) <= np.linalg.norm(dH)
    assert weighted(get_model("linear")).stable_lr(X) is None  # without the weights, no Hessian
    with pytest.raises(ValueError, match="bound to 30 rows; got X of 29"):
        weighted(get_model("linear"), v).stable_lr(X[1:])


def test_only_models_whose_twins_take_weights_can_be_weighted() -> None:
    with pytest.raises(UsageError, match=r"weights are supported for linear, logistic, softmax; got model 'mlp'"):
        weighted(get_model("mlp"))
