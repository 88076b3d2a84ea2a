"""Checking the stop rules every k iterations gives the same run as checking every step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conftest import plant
from gradtwin.errors import UsageError
from gradtwin.models import MODELS, Model
from gradtwin.training import TrainResult, make_engine, train
from gradtwin.training.loop import first_stop

# (lr, target_loss, iterations): a full budget, a target reached mid-chunk, a divergence mid-chunk
CASES = {
    "iterations": (0.1, None, 200),
    "target_loss": (0.1, 2900.0, 200),
    "diverged": (0.3, None, 200),
    "final_target": (0.1, 2863.7303869823513 + 1e-9, 500),  # reached only at i == iterations
}


def _same(a: TrainResult, b: TrainResult) -> None:
    assert (a.iterations, a.stop_reason, a.message) == (b.iterations, b.stop_reason, b.message)
    assert a.loss == b.loss
    np.testing.assert_array_equal(a.history.iteration, b.history.iteration)
    np.testing.assert_array_equal(a.history.loss, b.history.loss)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
        np.testing.assert_array_equal(a.history.params[name], b.history.params[name])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("engine", ["manual", "autograd"])
@pytest.mark.parametrize("record_every", [1, 3])
def test_chunked_checks_equal_checking_every_step(case: str, engine: str, record_every: int) -> None:
    model = MODELS["linear"]
    data = model.default_data(standardized=True)
    lr, target, iterations = CASES[case]
    runs = [
        train(make_engine(engine, model), data, lr, iterations, target, record_every=record_every, check_every=k)
        for k in (1, 7, 64, 1000)
    ]
    for other in runs[1:]:
        _same(runs[0], other)
    expected = {"iterations": "iterations", "target_loss": "target_loss", "diverged": "diverged"}.get(case)
    if expected:
        assert runs[0].stop_reason == expected
    rows = runs[0].history.iteration
    assert rows[-1] == runs[0].iterations and np.all(rows[:-1] % record_every == 0)


def test_linear1d_generic_path_also_replays_exactly() -> None:
    """linear1d has no fused path: the separate loss/gradient/update path under the same checks."""
    model = MODELS["linear1d"]
    data = model.default_data(standardized=True)
    for lr in (0.1, 1.5):
        a, b = (train(make_engine("manual", model), data, lr, 300, check_every=k) for k in (1, 16))
        _same(a, b)


def _growing_unseen_parameter() -> Model:
    """linear1d plus a parameter c the loss never sees, whose 'gradient' -1e10 * c makes it overflow."""
    base = MODELS["linear1d"]

    def gradients(params: dict, X: np.ndarray, Y: np.ndarray) -> dict:
        return {**base.manual.gradients(params, X, Y), "c": -1e10 * params["c"]}

    shapes = {"w": (), "b": (), "c": ()}
    return dataclasses.replace(
        base, name="unseen", manual=plant(base, gradients=gradients), param_shapes=lambda d: shapes
    )


def test_non_finite_parameters_with_finite_loss_stop_where_they_appear() -> None:
    """c overflows to inf mid-chunk while the loss stays finite: the run stops at that iteration."""
    model = _growing_unseen_parameter()
    data = MODELS["linear1d"].default_data(standardized=True)
    init = {"w": np.asarray(0.0), "b": np.asarray(0.0), "c": np.asarray(1.0)}
    runs = [train(make_engine("manual", model), data, 0.1, 200, init=init, check_every=k) for k in (1, 8, 64)]
    first = int(np.ceil(np.log(np.finfo(np.float64).max) / np.log(1 + 0.1 * 1e10)))  # c = (1 + 1e9)^k overflows
    for r in runs:
        assert r.stop_reason == "diverged" and r.iterations == first and "non-finite" in r.message
        assert np.isinf(r.params["c"]) and np.isfinite(r.history.params["c"][-2])
    for other in runs[1:]:
        _same(runs[0], other)


def test_mini_batches_check_every_step() -> None:
    model = MODELS["linear"]
    data = model.default_data(standardized=True)
    a, b = (train(make_engine("manual", model), data, 0.05, 40, batch_size=50, check_every=k) for k in (1, 32))
    _same(a, b)


def test_first_stop_is_the_loop_rule() -> None:
    losses = np.array([10.0, 9.0, 8.0, np.nan, 1.0])
    assert first_stop(losses, 10.0, None, 1e6) == 3
    assert first_stop(losses, 10.0, 8.5, 1e6) == 2
    assert first_stop(np.array([10.0, 2e7]), 10.0, None, 1e6) == 1
    assert first_stop(np.array([10.0, 9.0]), 10.0, None, 1e6) == -1


def test_check_every_is_validated() -> None:
    model = MODELS["linear"]
    with pytest.raises(UsageError, match="check_every must be an integer >= 1; got 0"):
        train(make_engine("manual", model), model.default_data(standardized=True), 0.1, 10, check_every=0)


def test_history_grows_with_recorded_rows_only() -> None:
    model = MODELS["linear"]
    r = train(make_engine("autograd", model), model.default_data(standardized=True), 0.1, 1000, record_every=100)
    assert r.history.iteration.tolist() == list(range(0, 1001, 100))
    assert r.history.params["w"].shape == (11, 10) and r.history.params["w"].dtype == np.float64


@pytest.mark.cuda  # skipped without a GPU (conftest)
@pytest.mark.parametrize("case", ["target_loss", "diverged"])
def test_chunked_checks_on_the_gpu(case: str) -> None:
    """On a GPU the losses stay on the device between checks; the run is still the per-step one."""
    model = MODELS["linear"]
    data = model.default_data(standardized=True)
    lr, target, iterations = CASES[case]
    a, b = (
        train(make_engine(e, model, device="cuda"), data, lr, iterations, target, check_every=k)
        for e, k in (("autograd", 1), ("autograd", 64))
    )
    _same(a, b)
