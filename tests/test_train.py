"""The training loop: whole histories agree, stop rules, divergence, least squares reached."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import DTYPES
from gradtwin.data import synthetic_linear1d
from gradtwin.errors import UsageError
from gradtwin.models import get_model
from gradtwin.parity.drift import drift_tolerance, gradient_tolerance
from gradtwin.parity.reference import least_squares
from gradtwin.training import make_engine, train

MODEL = get_model("linear1d")
DATA = MODEL.default_data(standardized=True)  # diabetes bmi, standardized: H = 2 I, stable lr = 1


def _both(device: str = "cpu", dtype: str = "float64", **kwargs):  # type: ignore[no-untyped-def]
    return [train(make_engine(e, MODEL, dtype, device), DATA, **kwargs) for e in ("manual", "autograd")]


@pytest.mark.parametrize("dtype", DTYPES)
def test_whole_histories_agree_step_by_step(device: str, dtype: str) -> None:
    """Every recorded row within the derived drift bound; the loss within what that drift allows.

    |L(p_a) - L(p_b)| <= |grad L| . e + lambda_max / 2 * e^2 + the loss's own rounding bound,
    with e the bound on ||p_a - p_b||_2 from `parity.drift.drift_tolerance`.
    """
    lr, steps = 0.1, 200
    manual, autograd = _both(device, dtype, lr=lr, iterations=steps)
    assert manual.history.iteration.tolist() == autograd.history.iteration.tolist() == list(range(steps + 1))
    drift = drift_tolerance(MODEL, manual.history.params, DATA.X, DATA.Y, np.dtype(dtype), lr, [None] * steps)
    for name in ("w", "b"):
        diff = np.abs(manual.history.params[name] - autograd.history.params[name])
        assert np.all(diff <= drift), f"{name}: worst row {np.argmax(diff - drift)}"
    lam_max = 2.0 / MODEL.stable_lr(DATA.X)
    for row in range(steps + 1):
        p = {k: v[row] for k, v in manual.history.params.items()}
        loss_tol, _ = gradient_tolerance(MODEL, p, DATA.X, DATA.Y, np.dtype(dtype))
        grad = MODEL.manual.gradients(p, DATA.X, DATA.Y)
        grad_norm = float(np.sqrt(sum(float(g) ** 2 for g in grad.values())))
        bound = grad_norm * drift[row] + lam_max / 2 * drift[row] ** 2 + float(loss_tol)
        assert abs(manual.history.loss[row] - autograd.history.loss[row]) <= bound, f"loss at row {row}"


def test_history_row_is_loss_at_recorded_params() -> None:
    """Row t holds the loss of row t's parameters (the article logs (w, b) and the loss).

    In the article a list named `mse` shadows the loss function, so logging the loss breaks
    on the first iteration; here every logged loss is recomputed and checked.
    """
    result = train(make_engine("manual", MODEL), DATA, lr=0.05, iterations=50)
    h = result.history
    for r in range(h.loss.shape[0]):
        p = {k: v[r] for k, v in h.params.items()}
        assert h.loss[r] == MODEL.manual.loss(p, DATA.X, DATA.Y)


def test_reaches_least_squares_on_bundled_data() -> None:
    """At lr = 0.1 each step shrinks the error by |1 - 0.1 * 2| = 0.8; 300 steps leave
    0.8^300 ~ 1e-29 of it, so only rounding (a few ulps of w*, b*) separates them."""
    lsq = least_squares(DATA)
    for result in _both(lr=0.1, iterations=300):
        for name in ("w", "b"):
            assert result.params[name] == pytest.approx(float(lsq[name]), rel=1e-12)


def test_stop_rule_iterations() -> None:
    result = train(make_engine("manual", MODEL), DATA, lr=0.1, iterations=17)
    assert (result.stop_reason, result.iterations, result.history.iteration[-1]) == ("iterations", 17, 17)


def test_stop_rule_target_loss_stops_at_first_iteration_below() -> None:
    target = 4000.0  # the optimum is 3890.46; the start (w = b = 0) is 29074.5
    for result in _both(lr=0.1, iterations=1000, target_loss=target):
        assert result.stop_reason == "target_loss"
        assert result.loss <= target < result.history.loss[-2]
        assert result.iterations == result.history.iteration[-1]


def test_record_every_keeps_every_kth_and_the_last() -> None:
    result = train(make_engine("autograd", MODEL), DATA, lr=0.1, iterations=23, record_every=5)
    assert result.history.iteration.tolist() == [0, 5, 10, 15, 20, 23]
    assert result.history.params["w"].shape == (6,)


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_just_above_the_stable_bound_diverges_and_is_reported(engine: str) -> None:
    stable = MODEL.stable_lr(DATA.X)
    assert stable == pytest.approx(1.0, rel=1e-12)  # standardized X: H = 2 I
    result = train(make_engine(engine, MODEL), DATA, lr=1.02 * stable, iterations=5000)
    assert result.stop_reason == "diverged"
    assert f"iteration {result.iterations}" in result.message
    assert "lr=1.02" in result.message and f"{stable:.6g}" in result.message
    assert np.isfinite(result.loss)  # caught by growth long before it overflows


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_just_below_the_stable_bound_converges(engine: str) -> None:
    """|1 - 0.98 * 2| = 0.96 per step: 2000 steps shrink the error by 1e-35."""
    result = train(make_engine(engine, MODEL), DATA, lr=0.98 * MODEL.stable_lr(DATA.X), iterations=2000)
    assert result.stop_reason == "iterations"
    assert result.params["w"] == pytest.approx(float(least_squares(DATA)["w"]), rel=1e-10)


def test_stable_bound_on_unstandardized_data() -> None:
    """On raw synthetic data (mean 5) the bound is far below 1, and the rule still holds."""
    raw = synthetic_linear1d(n=100, seed=1)
    raw = type(raw)(raw.X + 5.0, raw.Y, raw.name)
    stable = MODEL.stable_lr(raw.X)
    assert stable < 0.1
    above = train(make_engine("manual", MODEL), raw, lr=1.05 * stable, iterations=20000)
    below = train(make_engine("manual", MODEL), raw, lr=0.95 * stable, iterations=200)
    assert above.stop_reason == "diverged" and below.stop_reason == "iterations"


def test_non_finite_is_never_silent() -> None:
    """An absurd lr overflows within a few steps; the run says so and names the iteration."""
    result = train(make_engine("manual", MODEL), DATA, lr=1e200, iterations=100)
    assert result.stop_reason == "diverged"
    assert "diverged at iteration" in result.message


def test_seeded_start_is_shared_by_both_twins() -> None:
    manual, autograd = _both(lr=0.1, iterations=3, seed=42)
    assert manual.history.params["w"][0] == autograd.history.params["w"][0] != 0.0
    again = train(make_engine("manual", MODEL), DATA, lr=0.1, iterations=3, seed=42)
    assert again.history.params["w"][0] == manual.history.params["w"][0]


def test_mini_batches_are_shared_and_cover_each_epoch() -> None:
    manual, autograd = _both(lr=0.05, iterations=100, batch_size=64, batch_seed=3)
    np.testing.assert_allclose(manual.history.loss, autograd.history.loss, rtol=1e-12)
    assert manual.history.loss[1] != train(make_engine("manual", MODEL), DATA, lr=0.05, iterations=1).loss


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"lr": 0.0}, "lr must be a positive finite number"),
        ({"lr": -1.0}, "lr must be a positive finite number"),
        ({"lr": float("nan")}, "lr must be a positive finite number"),
        ({"lr": float("inf")}, "lr must be a positive finite number"),
        ({"lr": 0.1, "iterations": 0}, "iterations must be an integer >= 1"),
        ({"lr": 0.1, "target_loss": -1.0}, "target_loss must be"),
        ({"lr": 0.1, "record_every": 0}, "record_every must be"),
        ({"lr": 0.1, "batch_size": 0}, "batch_size must be"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        train(make_engine("manual", MODEL), DATA, **kwargs)  # type: ignore[arg-type]
