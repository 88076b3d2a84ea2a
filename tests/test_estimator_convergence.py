"""The estimators' stop rule: tol and n_iter_no_change as scikit-learn's SGD has them, and ConvergenceWarning."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from gradtwin import GradientDescentClassifier, GradientDescentRegressor, UsageError
from gradtwin.estimators import _GradientDescent
from gradtwin.training import TWINS, make_engine, train
from gradtwin.training.loop import NoChange

CPU_ENGINES = (*TWINS, "exact")


def _diabetes() -> tuple[np.ndarray, np.ndarray, float]:
    """All 10 columns, the raw target, and the least-squares loss of numpy.linalg.lstsq on [X 1]."""
    X, y = load_diabetes(return_X_y=True)
    A = np.hstack([X, np.ones((y.size, 1))])  # (n, d + 1)
    p, *_ = np.linalg.lstsq(A, y, rcond=None)
    return X, y, float(np.mean((A @ p - y) ** 2))


def _quiet(est: _GradientDescent, X: np.ndarray, y: np.ndarray) -> _GradientDescent:
    """Fit, failing on a ConvergenceWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        return est.fit(X, y)


def _sklearn_rule(losses: np.ndarray, tol: float, patience: int) -> int:
    """scikit-learn's _plain_sgd loop, one epoch at a time: the index where it stops, or -1."""
    best, count = math.inf, 0
    for j, loss in enumerate(losses):
        count = count + 1 if loss > best - tol else 0
        best = min(best, loss)
        if count >= patience:
            return j
    return -1


# ---- the default regressor reaches least squares ------------------------------------------------


@pytest.mark.parametrize("engine", CPU_ENGINES)
def test_the_default_regressor_reaches_least_squares_on_diabetes(engine: str) -> None:
    """Defaults only: loss_ within 1e-6 of lstsq's relatively, stopped by tol, and no warning."""
    X, y, best = _diabetes()
    reg = _quiet(GradientDescentRegressor(engine=engine), X, y)
    gap = (reg.loss_ - best) / best
    assert 0 <= gap < 1e-6, f"relative gap {gap:.3g}"
    assert gap > 1e-8  # the stop is tol's, well before max_iter: the gap the docstring derives (4.8e-7)
    assert reg.stop_reason_ == "converged" and reg.n_iter_ < reg.max_iter
    assert reg.loss_curve_.size == reg.n_iter_ + 1


def test_the_old_default_of_500_iterations_warns_and_says_what_to_do() -> None:
    X, y, best = _diabetes()
    with pytest.warns(ConvergenceWarning) as caught:
        reg = GradientDescentRegressor(max_iter=500).fit(X, y)
    message = str(caught[0].message)
    assert message.startswith("GradientDescentRegressor: max_iter=500 ended the fit before it converged (loss 2862.36")
    assert "raise max_iter, or raise tol" in message and "tol=None" in message and "\n" not in message
    assert reg.stop_reason_ == "iterations" and reg.n_iter_ == 500 and reg.loss_ > best * (1 + 1e-4)


# ---- the warning, tol=None and n_iter_no_change -------------------------------------------------


@pytest.mark.parametrize("cls", [GradientDescentRegressor, GradientDescentClassifier])
def test_a_tiny_max_iter_warns_and_a_converged_fit_does_not(cls: type[_GradientDescent]) -> None:
    X, y = _diabetes()[:2] if cls is GradientDescentRegressor else load_breast_cancer(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match=rf"^{cls.__name__}: max_iter=3 ended the fit before it converged"):
        est = cls(max_iter=3).fit(X, y)
    assert est.stop_reason_ == "iterations" and est.n_iter_ == 3
    est = _quiet(cls(), X, y)
    assert est.stop_reason_ == "converged"


@pytest.mark.parametrize("cls", [GradientDescentRegressor, GradientDescentClassifier])
def test_tol_none_runs_every_iteration_without_a_warning(cls: type[_GradientDescent]) -> None:
    X, y = _diabetes()[:2] if cls is GradientDescentRegressor else load_breast_cancer(return_X_y=True)
    converged = cls().fit(X, y).n_iter_
    est = _quiet(cls(tol=None, max_iter=converged + 40), X, y)
    assert est.n_iter_ == converged + 40 and est.stop_reason_ == "iterations"


def test_target_loss_stops_first_without_a_warning() -> None:
    X, y, best = _diabetes()
    reg = _quiet(GradientDescentRegressor(target_loss=1.01 * best), X, y)
    assert reg.stop_reason_ == "target_loss" and reg.loss_ <= 1.01 * best


def test_n_iter_no_change_is_how_many_stalled_iterations_in_a_row_stop_the_fit() -> None:
    """The last n_iter_no_change losses each fail to beat the best before them by tol * loss_0; the one before does.

    Full-batch descent on a quadratic lowers the loss by less each step, so once a step stalls
    every later one does: one more stalled iteration asked is one more iteration done.
    """
    X, y, _ = _diabetes()
    fits = {n: GradientDescentRegressor(n_iter_no_change=n).fit(X, y) for n in (1, 5, 6, 20)}
    for n, reg in fits.items():
        curve, threshold = reg.loss_curve_, reg.tol * reg.loss_curve_[0]
        stalled = [bool(curve[j] > curve[:j].min() - threshold) for j in range(1, curve.size)]
        assert stalled[-n:] == [True] * n and not stalled[-n - 1], n
    assert [fits[n].n_iter_ - fits[1].n_iter_ for n in (5, 6, 20)] == [4, 5, 19]


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.sampled_from([-1.0, -0.5, -0.01, 0.0, 0.005, 0.3, math.nan]), min_size=1, max_size=40),
    tol=st.sampled_from([0.0, 0.01, 0.1]),
    patience=st.integers(1, 4),
    cut=st.integers(1, 40),
)
def test_the_rule_is_scikit_learn_s_fed_whole_or_in_chunks(
    steps: list[float], tol: float, patience: int, cut: int
) -> None:
    """NoChange on any losses (rises, plateaus, NaN) fires where scikit-learn's loop stops, however they are chunked."""
    step = np.asarray(steps)
    losses = 10.0 + np.cumsum(np.nan_to_num(step))
    losses[np.isnan(step)] = math.nan  # a NaN here and there, finite values after it
    expected = _sklearn_rule(losses, tol, patience)
    whole = NoChange(tol, patience)
    assert whole.scan(0, losses) == expected
    chunked = NoChange(tol, patience)
    first = chunked.scan(0, losses[:cut])
    assert (first if first >= 0 else chunked.scan(cut, losses[cut:])) == expected


def test_mini_batch_epochs_are_row_weighted_means_and_the_stop_falls_between_epochs() -> None:
    """With batch_size, an epoch's loss is the row-weighted mean of its batch losses; the rule runs on those."""
    X, y, _ = _diabetes()
    batch = 100  # 442 rows: batches of 100, 100, 100, 100, 42
    reg = GradientDescentRegressor(batch_size=batch, lr=0.05, random_state=0, tol=1e-4, max_iter=5000).fit(X, y)
    assert reg.stop_reason_ == "converged"
    assert reg.n_iter_ % 5 == 0
    sizes = np.array([100, 100, 100, 100, 42]) / 442
    epochs = reg.loss_curve_[:-1].reshape(-1, 5) @ sizes  # (epochs,) the batch losses, one epoch a row
    assert _sklearn_rule(epochs, reg.tol * reg.loss_curve_[0], reg.n_iter_no_change) == epochs.size - 1


def test_the_fit_does_not_depend_on_y_s_units() -> None:
    """tol is in units of loss_0 = var(y): y times 2^k (exact in binary) gives the same stop and coef times 2^k."""
    X, y, _ = _diabetes()
    reg = GradientDescentRegressor().fit(X, y)
    for k in (-20, 30):
        scaled = GradientDescentRegressor().fit(X, y * 2.0**k)
        assert scaled.n_iter_ == reg.n_iter_ and scaled.stop_reason_ == "converged"
        np.testing.assert_array_equal(scaled.coef_, reg.coef_ * 2.0**k)


# ---- the rule lives in the training loop --------------------------------------------------------


@pytest.mark.parametrize("engine", CPU_ENGINES)
def test_the_tol_stop_is_the_same_whatever_check_every(engine: str) -> None:
    """The loop checks in chunks and replays the one that stops: the same stop as checking every step."""
    X, y, _ = _diabetes()
    problem = GradientDescentRegressor()._prepare(X, y, None)
    runs = [
        train(
            make_engine(engine, problem.model),
            problem.data,
            problem.lr,
            20_000,
            init=problem.init,
            tol=1e-9 * problem.start_loss,
            check_every=check_every,
        )
        for check_every in (1, 3, 64, 1000, 4096)
    ]
    first = runs[0]
    assert first.stop_reason == "converged" and 100 < first.iterations < 20_000
    assert _sklearn_rule(first.history.loss, 1e-9 * problem.start_loss, 5) == first.iterations
    for run in runs[1:]:
        assert (run.iterations, run.stop_reason) == (first.iterations, first.stop_reason)
        np.testing.assert_array_equal(run.history.loss, first.history.loss)
        for name, value in first.params.items():
            np.testing.assert_array_equal(run.params[name], value)


def test_the_exact_engine_stops_where_the_twins_do() -> None:
    X, y, _ = _diabetes()
    fits = {e: GradientDescentRegressor(engine=e).fit(X, y) for e in CPU_ENGINES}
    assert len({f.n_iter_ for f in fits.values()}) == 1
    np.testing.assert_allclose(fits["exact"].coef_, fits["manual"].coef_, rtol=1e-9)


def test_a_run_that_converges_at_its_last_iteration_says_converged() -> None:
    """The loss after the last update is checked too, as target_loss is."""
    X, y, _ = _diabetes()
    n = GradientDescentRegressor().fit(X, y).n_iter_
    reg = _quiet(GradientDescentRegressor(max_iter=n), X, y)
    assert (reg.n_iter_, reg.stop_reason_) == (n, "converged")
    with pytest.warns(ConvergenceWarning):
        assert GradientDescentRegressor(max_iter=n - 1).fit(X, y).stop_reason_ == "iterations"


# ---- the classifier --------------------------------------------------------------------------------


def test_the_default_classifier_on_breast_cancer_converges_and_classifies() -> None:
    """Breast cancer is separable, so the cross-entropy has no minimum; tol=1e-4 stops it where it classifies well."""
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    clf = _quiet(GradientDescentClassifier(), X_train, y_train)
    assert clf.stop_reason_ == "converged" and clf.n_iter_ < 1000
    assert clf.score(X_test, y_test) > 0.95
    tight = GradientDescentClassifier(tol=1e-9, max_iter=2000)
    with pytest.warns(ConvergenceWarning, match=r"max_iter=2000 ended the fit before it converged"):
        tight.fit(X_train, y_train)  # the loss keeps falling like 1/t: a tight tol is never met


# ---- bad parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "value", "says"),
    [
        ("tol", -1.0, r"^GradientDescentRegressor: tol must be None or a finite number >= 0; got -1\.0$"),
        ("tol", math.inf, r"^GradientDescentRegressor: tol must be None or a finite number >= 0; got inf$"),
        ("n_iter_no_change", 0, r"^GradientDescentRegressor: n_iter_no_change must be an integer >= 1; got 0$"),
    ],
)
def test_a_bad_tol_or_n_iter_no_change_is_refused_at_fit(param: str, value: Any, says: str) -> None:
    X, y, _ = _diabetes()
    with pytest.raises(UsageError, match=says):
        GradientDescentRegressor(**{param: value}).fit(X, y)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"tol": -1.0}, r"^tol must be a finite number >= 0; got -1\.0$"),
        ({"tol": 1e-3, "n_iter_no_change": 0}, r"^n_iter_no_change must be an integer >= 1; got 0$"),
    ],
)
def test_train_refuses_a_bad_tol_or_n_iter_no_change(kwargs: dict[str, Any], says: str) -> None:
    X, y, _ = _diabetes()
    problem = GradientDescentRegressor()._prepare(X, y, None)
    with pytest.raises(UsageError, match=says):
        train(make_engine("manual", problem.model), problem.data, problem.lr, 10, init=problem.init, **kwargs)
