"""The article's model: twins agree, finite differences referee, planted bugs are caught."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DEVICES, DTYPES, assert_parity, caught, plant
from gradtwin.data import Dataset
from gradtwin.manual import linear1d as manual
from gradtwin.models import get_model
from gradtwin.parity.model_check import random_problem

MODEL = get_model("linear1d")


@st.composite
def problems(draw: st.DrawFn) -> tuple[dict[str, np.ndarray], Dataset]:
    """A data set of 1 to 200 points and a parameter point, each at a random scale.

    Values span eight orders of magnitude, and Y may sit exactly on the line (a zero
    residual) so that gradients near zero, where relative errors blow up, are drawn too.
    """
    n = draw(st.integers(1, 200))
    seed = draw(st.integers(0, 2**32 - 1))
    x_scale, y_scale, p_scale = (10.0 ** draw(st.floats(-4, 4)) for _ in range(3))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal(n) * x_scale + draw(st.floats(-10, 10)) * x_scale
    w, b = rng.standard_normal(2) * p_scale
    exact = draw(st.booleans())
    Y = X * w + b if exact else rng.standard_normal(n) * y_scale + 2.0 * X
    return {"w": np.asarray(w), "b": np.asarray(b)}, Dataset(X, Y, "drawn")


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=1000)
@given(problem=problems())
def test_twins_agree_at_drawn_points(problem: tuple[dict[str, np.ndarray], Dataset], dtype: str) -> None:
    """Forward, gradients, the float64 reference and finite differences, within derived bounds."""
    params, data = problem
    assert_parity(MODEL, params, data, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
def test_twins_agree_on_device(device: str, dtype: str) -> None:
    rng = np.random.default_rng(7)
    for point in range(20):
        params, data = random_problem(MODEL, rng)
        assert_parity(MODEL, params, data, dtype, device, point=point)


def test_gradient_formula_by_hand() -> None:
    """Three points worked on paper: X = [1, 2, 3], Y = [2, 4, 6], w = b = 0.

    residual = [-2, -4, -6]; dL/dw = 2/3 * (-2*1 - 4*2 - 6*3) = -56/3;
    dL/db = 2/3 * (-2 - 4 - 6) = -8; L = (4 + 16 + 36) / 3 = 56/3.
    """
    X, Y = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])
    params = {"w": np.asarray(0.0), "b": np.asarray(0.0)}
    grads = manual.gradients(params, X, Y)
    assert float(grads["w"]) == pytest.approx(-56 / 3, rel=1e-15)
    assert float(grads["b"]) == pytest.approx(-8.0, rel=1e-15)
    assert float(manual.loss(params, X, Y)) == pytest.approx(56 / 3, rel=1e-15)


def test_twins_share_names_and_signatures() -> None:
    """The twin contract: both modules define predict, loss and gradients alike.

    The article calls `gradient(...)` where it defined `gradients`: a misspelt name in
    either twin fails here.
    """
    for name in ("predict", "loss", "gradients"):
        m, a = getattr(MODEL.manual, name), getattr(MODEL.autograd, name)
        assert inspect.signature(m).parameters.keys() == inspect.signature(a).parameters.keys()
    assert set(MODEL.manual.gradients({"w": np.asarray(1.0), "b": np.asarray(0.0)}, np.ones(3), np.ones(3))) == {
        "w",
        "b",
    }


# Planted bugs: each a manual twin as someone might write it. The parity check must
# report every one, at an ordinary point away from the optimum, while the real twin passes.


def _article_sign(params, X, Y):  # type: ignore[no-untyped-def]
    """The article's gradients: np.average(-2 * X * (pred - Y)), the sign of both flipped."""
    pred = X * params["w"] + params["b"]
    return {"w": np.average(-2 * (X * (pred - Y))), "b": np.average(-2 * (pred - Y))}


def _article_loss(params, X, Y):  # type: ignore[no-untyped-def]
    """The article's MSE: np.average(Y - (predict(X, w, b)) ** 2), the square misplaced."""
    return np.average(Y - (X * params["w"] + params["b"]) ** 2)


def _lost_factor_two(params, X, Y):  # type: ignore[no-untyped-def]
    g = manual.gradients(params, X, Y)
    return {k: v / 2 for k, v in g.items()}


def _sum_not_mean(params, X, Y):  # type: ignore[no-untyped-def]
    g = manual.gradients(params, X, Y)
    return {k: v * X.shape[0] for k, v in g.items()}


def _sum_not_mean_loss(params, X, Y):  # type: ignore[no-untyped-def]
    return np.sum((X * params["w"] + params["b"] - Y) ** 2)


BUGS = {
    "article sign of both gradients": {"gradients": _article_sign},
    "article MSE parenthesis": {"loss": _article_loss},
    "lost factor 2": {"gradients": _lost_factor_two},
    "sum instead of mean (gradients)": {"gradients": _sum_not_mean},
    "sum instead of mean (loss)": {"loss": _sum_not_mean_loss},
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bug", list(BUGS))
def test_planted_bugs_are_reported(bug: str, dtype: str) -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal(50)
    Y = 3.0 * X + 1.0 + 0.1 * rng.standard_normal(50)
    data = Dataset(X, Y, "planted")
    params = {"w": np.asarray(0.5), "b": np.asarray(-0.25)}
    failed = caught(MODEL, params, data, plant(MODEL, **BUGS[bug]), dtype)  # the real twin passes first
    assert failed, f"the parity check missed the planted bug: {bug}"
    assert all(comparison.startswith(("manual", "autograd")) for comparison, _ in failed)


def test_hessian_and_stable_lr() -> None:
    """lambda_max of H = 2/n [[sum x^2, sum x], [sum x, n]] gives the stable bound 2/lambda_max."""
    X = np.array([-1.0, 0.0, 1.0])  # sum x = 0, sum x^2 = 2, n = 3: H = diag(4/3, 2)
    np.testing.assert_allclose(np.asarray(manual.hessian(X)), np.diag([4 / 3, 2.0]), rtol=1e-15)
    assert MODEL.stable_lr(X) == pytest.approx(1.0, rel=1e-15)
