"""The scikit-learn estimators: scikit-learn's own conformance suite, and what that suite cannot see."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from conftest import DEVICES, DTYPES
from gradtwin import DataError, DivergedError, GradientDescentClassifier, GradientDescentRegressor, UsageError
from gradtwin.errors import DataTypeError
from gradtwin.estimators import Problem, _GradientDescent
from gradtwin.parity.drift import drift_tolerance
from gradtwin.parity.reference import least_squares
from gradtwin.parity.rounding import tolerance, unit_roundoff
from gradtwin.training import ENGINES, TWINS, TrainResult, make_engine, train

# These fits run a fixed max_iter on purpose (to compare twins and engines step by step); that the
# estimators warn when max_iter ends a fit before convergence is tested in test_estimator_convergence.py.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ESTIMATORS = (GradientDescentRegressor, GradientDescentClassifier)


@pytest.mark.parametrize("device", DEVICES)  # a parameter of its own, so the cuda cases are marked (conftest)
@parametrize_with_checks([cls(engine=engine) for cls in ESTIMATORS for engine in TWINS])
def test_scikit_learn_conformance(estimator: Any, check: Any, device: str) -> None:
    """Every check of `check_estimator`, for each estimator, twin engine and device; none expected to fail."""
    check(clone(estimator).set_params(device=device))


@parametrize_with_checks([GradientDescentRegressor(engine="exact")])  # the closed-form engine: linear models, cpu only
def test_scikit_learn_conformance_of_the_exact_engine(estimator: Any, check: Any) -> None:
    """Every check of `check_estimator` for the regressor on the exact engine; none expected to fail."""
    check(estimator)


def test_the_twin_engines_are_the_project_s_engines() -> None:
    assert set(TWINS) <= set(ENGINES)


# ---- data --------------------------------------------------------------------------------------


def _regression(n: int = 80, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated columns at different scales and offsets, y linear in them plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 10.0 ** rng.uniform(-2, 2, d) + rng.normal(0, 5, d)
    return X, X @ rng.standard_normal(d) + 3.0 + rng.standard_normal(n)


def _classes(n: int = 90, d: int = 3, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k overlapping Gaussian blobs (not separable, so the optimum is finite)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    return rng.standard_normal((n, d)) * 2.0 + rng.standard_normal((k, d))[y] * 1.5 + 7.0, y


def _weights(n: int, seed: int = 1) -> np.ndarray:
    w = np.random.default_rng(seed).integers(0, 4, n).astype(float)
    w[:3] = 1.0
    return w


# ---- beyond the suite: divergence, never NaN --------------------------------------------------


@pytest.mark.parametrize("engine", TWINS)
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_divergence_raises_naming_iteration_lr_and_stable_bound(cls: type[_GradientDescent], engine: str) -> None:
    """A huge lr raises DivergedError, never NaN coefficients; a refit that fails forgets the old fit."""
    X, y = _regression() if cls is GradientDescentRegressor else _classes()
    est = cls(engine=engine, max_iter=50).fit(X, y)
    assert np.all(np.isfinite(est.coef_))
    stable = 2.0 * est.lr_  # lr='auto' takes 1/L; 2/L is stable
    with pytest.raises(DivergedError) as raised:
        est.set_params(lr=1e9).fit(X, y)
    message = str(raised.value)
    assert re.search(r"diverged at iteration \d+ \(.*\) with lr=1e\+09; ", message), message
    assert f"{stable:.6g}" in message and "stable" in message
    assert isinstance(raised.value, ArithmeticError)
    with pytest.raises(NotFittedError):  # no stale or NaN coefficients left behind
        est.predict(X)


@pytest.mark.parametrize("engine", TWINS)
def test_a_slow_divergence_is_caught_before_the_loss_blows_up(engine: str) -> None:
    """lr a little above the largest stable one: after 6 steps the loss has grown, far from 1e6 times.

    The training loop's blow-up rule has not fired yet; a full-batch descent whose loss rose
    is diverging all the same, and the fit refuses it rather than return its coefficients.
    """
    X, y = _regression()
    auto = GradientDescentRegressor(engine=engine, max_iter=1).fit(X, y)
    est = GradientDescentRegressor(engine=engine, lr=2.0 * auto.lr_ * 1.5, max_iter=6)
    with pytest.raises(DivergedError, match=r"with lr=.*the largest stable learning rate for this model") as raised:
        est.fit(X, y)
    after, before = map(float, re.search(r"loss (\S+) from (\S+)\)", str(raised.value)).groups())  # type: ignore[union-attr]
    assert before < after < 1e6 * before


@settings(max_examples=60)
@given(
    n=st.integers(2, 30),
    d=st.integers(1, 4),
    scale=st.sampled_from([1e-150, 1e-8, 1.0, 1e8, 1e150]),
    seed=st.integers(0, 2**16),
    weighted=st.booleans(),
    classify=st.booleans(),
)
def test_fits_are_finite_or_raise(n: int, d: int, scale: float, seed: int, weighted: bool, classify: bool) -> None:
    """Data at any scale, with weights or not: finite coefficients, losses and predictions, or a clear error.

    The blind spot of the suite (it compares NaN equal to NaN) is closed here: no fit ends in NaN.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * scale + rng.standard_normal(d) * scale
    if classify:
        y: np.ndarray = rng.integers(0, 3, n)
        y[:2] = [0, 1]
    else:
        y = rng.standard_normal(n) * scale
    weight = rng.integers(0, 3, n).astype(float) if weighted else None
    if weight is not None:
        weight[:2] = 1.0
    est = (GradientDescentClassifier if classify else GradientDescentRegressor)(max_iter=30)
    try:
        est.fit(X, y, sample_weight=weight)
    except (DataError, DivergedError) as error:
        assert "\n" not in str(error)
        return
    assert np.all(np.isfinite(est.coef_)) and np.all(np.isfinite(est.intercept_))
    assert np.all(np.isfinite(est.loss_curve_)) and est.loss_curve_.size == est.n_iter_ + 1
    assert np.all(np.isfinite(est.predict_proba(X) if classify else est.predict(X)))


# ---- labels, targets and weights ---------------------------------------------------------------


def test_string_labels_are_classes() -> None:
    X, y = _classes(k=3)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    est = GradientDescentClassifier(max_iter=100).fit(X, names)
    np.testing.assert_array_equal(est.classes_, ["setosa", "versicolor", "virginica"])
    assert set(est.predict(X)) <= set(names) and est.score(X, names) > 0.5
    by_index = GradientDescentClassifier(max_iter=100).fit(X, y)
    np.testing.assert_array_equal(est.coef_, by_index.coef_)  # the twins see the same indices
    binary = GradientDescentClassifier(max_iter=50).fit(X[y < 2], np.array(["no", "yes"])[y[y < 2]])
    assert binary.coef_.shape == (1, 3) and binary.decision_function(X).shape == (X.shape[0],)
    np.testing.assert_array_equal(binary.predict(X) == "yes", binary.decision_function(X) > 0)


def test_a_non_numeric_regression_target_is_refused() -> None:
    X, _ = _regression(n=4)
    with pytest.raises(DataTypeError, match=r"y must hold real numbers; got dtype <U1"):
        GradientDescentRegressor().fit(X, np.array(["a", "b", "c", "d"]))


def test_a_continuous_target_for_the_classifier_is_refused() -> None:
    X, y = _regression(n=6)
    with pytest.raises(ValueError, match=r"Unknown label type: continuous"):
        GradientDescentClassifier().fit(X, y)


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize(
    ("weight", "says"),
    [
        ([1.0, -1.0, 1.0, 1.0, 1.0, 1.0], r"sample_weight must be >= 0; got -1 at row 1 \(counting from 0\)$"),
        ([0.0] * 6, r"sample_weight must not be all zero; got 6 zeros, which leave nothing to fit$"),
    ],
)
def test_negative_or_all_zero_weights_are_refused(cls: type[_GradientDescent], weight: list[float], says: str) -> None:
    X, y = _classes(n=6, k=2)
    with pytest.raises(DataError, match=says):
        cls().fit(X, y, sample_weight=weight)


def test_weights_that_leave_one_class_are_refused_naming_it() -> None:
    X, y = _classes(n=6, k=2)
    with pytest.raises(DataError, match=r"at least 2 classes with a positive sample_weight; got 1 class \(1\)"):
        GradientDescentClassifier().fit(X, y, sample_weight=y.astype(float))


@pytest.mark.parametrize(
    ("param", "value", "says"),
    [
        ("engine", "jax", r"engine must be one of manual, autograd.*; got 'jax'$"),
        ("lr", -1.0, r"lr must be 'auto' or a positive finite number; got -1\.0$"),
        ("max_iter", 0, r"max_iter must be an integer >= 1; got 0$"),
        ("target_loss", float("nan"), r"target_loss must be None or a finite number >= 0; got nan$"),
        ("batch_size", 0, r"batch_size must be None or an integer >= 1; got 0$"),
    ],
)
def test_bad_parameters_are_refused_at_fit(param: str, value: Any, says: str) -> None:
    X, y = _regression(n=5)
    est = GradientDescentRegressor(**{param: value})  # scikit-learn's rule: __init__ only stores
    with pytest.raises(UsageError, match=says):
        est.fit(X, y)


@pytest.mark.parametrize("engine", TWINS)
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_equal_weights_are_no_weights_and_a_zero_weight_row_does_not_count(
    cls: type[_GradientDescent], engine: str
) -> None:
    """Equal weights cancel: the very same run. A zero weight multiplies its row's every term by an
    exact 0, so whatever that row holds, the fit is bit for bit the same."""
    X, y = _regression() if cls is GradientDescentRegressor else _classes()
    fit = cls(engine=engine, max_iter=30).fit
    np.testing.assert_array_equal(fit(X, y).coef_, fit(X, y, sample_weight=np.full(y.size, 3.0)).coef_)
    weight = _weights(y.size)
    zero = weight == 0
    X2, y2 = X.copy(), y.copy()
    X2[zero] = np.random.default_rng(9).standard_normal(X2[zero].shape) * 1e6
    y2[zero] = y[::-1][zero]  # other targets (other classes) in the dropped rows
    a, b = fit(X, y, sample_weight=weight), fit(X2, y2, sample_weight=weight)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)


# ---- manual and autograd agree on the fitted coefficients, within the derived bound ------------


def _runs(problem: Problem, dtype: str, iterations: int) -> dict[str, TrainResult]:
    return {
        e: train(make_engine(e, problem.model, dtype), problem.data, problem.lr, iterations, init=problem.init)
        for e in TWINS
    }


def _history_bound(problem: Problem, run: TrainResult, dtype: str) -> np.ndarray:
    """Bound on max |manual - autograd| of the standardized parameters after each step: `drift_tolerance`.

    Squared error: the drift through the constant Hessian. The cross-entropies: gradient descent
    with lr <= 2/L on a convex, L-smooth loss is nonexpansive, so per-step differences add up.
    """
    steps = run.history.iteration.size - 1
    data = problem.data
    return drift_tolerance(
        problem.model, run.history.params, data.X, data.Y, dtype, problem.lr, [None] * steps, weight=data.weight
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", ["regressor", "binary", "multiclass"])
def test_manual_and_autograd_fit_the_same_coefficients(kind: str, weighted: bool, dtype: str) -> None:
    """Every step of both engines' runs within the derived bound, and the fitted coef_ within its image."""
    if kind == "regressor":
        X, y = _regression()
        cls: type[_GradientDescent] = GradientDescentRegressor
    else:
        X, y = _classes(k=2 if kind == "binary" else 3)
        cls = GradientDescentClassifier
    weight = _weights(y.size) if weighted else None
    iterations = 60
    problem = cls(max_iter=iterations)._prepare(X, y, weight)
    assert (problem.data.weight is not None) == weighted
    runs = _runs(problem, dtype, iterations)
    bound = _history_bound(problem, runs["manual"], dtype)
    first = runs["manual"].history.params
    travelled = max(float(np.max(np.abs(v[-1] - v[0]))) for v in first.values())
    assert bound[-1] < 0.1 * travelled  # the bound can fail: a twin a tenth of the way off is caught
    for k, v in first.items():
        diff = np.abs(v - runs["autograd"].history.params[k]).reshape(bound.size, -1).max(axis=1)
        worst = int(np.argmax(diff - bound))
        assert np.all(diff <= bound), f"{k}: step {worst} differs by {diff[worst]:.3g}, bound {bound[worst]:.3g}"

    fits = {e: cls(engine=e, max_iter=iterations, dtype=dtype).fit(X, y, sample_weight=weight) for e in TWINS}
    for e in TWINS:  # the estimator's fit is exactly this run, mapped back to X's units
        w = runs[e].params["w" if "w" in runs[e].params else "W"]  # (d,) or (d, k)
        expected = w.T / problem.x_scale  # (d,) or (k, d)
        np.testing.assert_array_equal(np.reshape(fits[e].coef_, expected.shape), expected)
    # coef = w' / scale: a difference in w' scales by 1/scale, and each division rounds once
    u = unit_roundoff(np.float64)
    coef_m, coef_a = fits["manual"].coef_, fits["autograd"].coef_
    coef_tol = bound[-1] / problem.x_scale + u * (np.abs(coef_m) + np.abs(coef_a))
    assert np.all(np.abs(coef_m - coef_a) <= coef_tol)


def test_coefficients_in_x_units_give_the_twins_predictions() -> None:
    """X @ coef_ + intercept_ equals the twin's X' @ w' + b' on standardized X, to the rounding of both.

    intercept_ = b' - mean @ coef_, so every term either side is bounded by |X| @ |coef_|,
    |mean| @ |coef_|, |b'| or |X'| @ |w'|; each side rounds a sum of d + 2 of them a few times.
    """
    X, y = _regression()
    est = GradientDescentRegressor(max_iter=80)
    problem = est._prepare(X, y, None)
    run = train(make_engine("manual", problem.model), problem.data, problem.lr, 80, init=problem.init)
    ours = est.fit(X, y).predict(X)
    theirs = problem.model.manual.predict(run.params, problem.data.X)
    w, b = np.abs(run.params["w"]), np.abs(run.params["b"])
    size = (np.abs(X) + np.abs(problem.x_mean)) @ np.abs(est.coef_) + b + np.abs(problem.data.X) @ w
    assert np.all(np.abs(ours - theirs) <= 2 * tolerance(np.float64, X.shape[1] + 2, size))


def test_regressor_reaches_least_squares_within_the_contraction_bound() -> None:
    """||p_T - p*|| <= rho^T ||p_0 - p*|| + rounding, rho = max_i |1 - lr lambda_i(H)|, against lstsq.

    The computed run is within the drift bound of the exact one; lstsq's own answer is within
    the first-order least-squares perturbation bound eps * (2 kappa + kappa^2 |r| / (|A| |p*|)) |p*|,
    eps = gamma(n (d + 1)) its backward error (Golub and Van Loan, sec. 5.3).
    """
    rng = np.random.default_rng(4)
    X = rng.standard_normal((200, 3)) * [1e-3, 1.0, 1e3] + [5.0, -2.0, 1e4]  # independent columns, any units
    y = X @ [2e3, -1.0, 3e-3] + 7.0 + rng.standard_normal(200)
    T = 200
    est = GradientDescentRegressor(max_iter=T, tol=None)  # all T steps: the bound is stated for T
    problem = est._prepare(X, y, None)
    run = train(make_engine("manual", problem.model), problem.data, problem.lr, T, init=problem.init)
    np.testing.assert_array_equal(est.fit(X, y).coef_, run.params["w"] / problem.x_scale)
    star = least_squares(problem.data)  # on standardized X
    p_star, p_T = np.append(star["w"], star["b"]), np.append(run.params["w"], run.params["b"])
    p_0 = np.append(problem.init["w"], problem.init["b"])  # type: ignore[index]
    H = problem.model.manual.hessian(problem.data.X)
    rho = float(np.max(np.abs(1.0 - problem.lr * np.linalg.eigvalsh(H))))
    drift = drift_tolerance(problem.model, run.history.params, problem.data.X, y, "float64", problem.lr, [None] * T)
    A = np.hstack([problem.data.X, np.ones((y.size, 1))])  # (n, d + 1)
    kappa, norm_A = np.linalg.cond(A), np.linalg.norm(A, 2)
    r = np.linalg.norm(A @ p_star - y)
    eps = float(tolerance(np.float64, y.size * A.shape[1], 1.0))
    lstsq_error = eps * (2 * kappa + kappa**2 * r / (norm_A * np.linalg.norm(p_star))) * np.linalg.norm(p_star)
    assert rho**T < 1e-12  # so the bound says "converged", and the test can fail
    assert np.linalg.norm(p_T - p_star) <= rho**T * np.linalg.norm(p_0 - p_star) + drift[-1] + lstsq_error
