"""The third twins (gradtwin's own autodiff): the twin contract, three-way parity and training histories.

tape vs autograd vs finite differences, and manual vs the same, at random problems from the
registry in float64 and float32 (`check_gradients`, derived tolerances); with sample weights for the
weighted families; and 50 steps of p -= lr * g from the same start, tape against manual, within the
drift bound of `parity.drift`.
"""

from __future__ import annotations

import importlib
import inspect
import types
from typing import Any

import numpy as np
import pytest
import torch

from conftest import DTYPES
from gradtwin.autodiff import Tensor, graph
from gradtwin.models import MODELS, Model, bind
from gradtwin.parity.drift import drift_tolerance, gradient_tolerance
from gradtwin.parity.gradcheck import check_gradients
from gradtwin.steps.tap import recording
from gradtwin.tape import linear, linear1d, logistic, mlp, softmax

TAPE = {"linear1d": linear1d, "linear": linear, "logistic": logistic, "softmax": softmax, "mlp": mlp}
NAMES = [n for n, m in MODELS.items() if m.family in TAPE]  # the five families; the mlp's three activations
SEEDS = [0, 1, 2]


def tape_twin(model: Model) -> types.ModuleType:
    """The model's tape twin with its options (the mlp's activation) bound, as the registry binds the others."""
    return bind(TAPE[model.family], **model.options)


def _functions(m: types.ModuleType) -> list[str]:
    return [n for n, v in vars(m).items() if inspect.isfunction(v) and v.__module__ == m.__name__]


def _problem(model: Model, seed: int, weighted: bool = False) -> tuple[dict[str, np.ndarray], tuple[Any, ...]]:
    rng = np.random.default_rng(seed)
    data = model.random_data(rng)
    params = model.init_params(data, seed=seed)
    if model.init is None:  # seeded normal values, spread over scales, so no term is trivially zero
        params = {k: v * 10.0 ** rng.uniform(-1, 1) for k, v in params.items()}
    arrays: tuple[Any, ...] = (data.X, data.Y)
    if weighted:
        weight = np.asarray(rng.uniform(0.0, 3.0, data.X.shape[0]))  # (n,)
        weight[0] += 1.0  # never all zero
        arrays += (weight,)
    return params, arrays


# ---- the twin contract ------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(TAPE))
def test_tape_twin_defines_the_autograd_twins_names_in_order_with_the_same_signatures(family: str) -> None:
    tape = TAPE[family]
    autograd = importlib.import_module(f"gradtwin.autograd.{family}")
    assert _functions(tape) == _functions(autograd)
    for name in _functions(tape):
        a = inspect.signature(getattr(tape, name)).parameters
        b = inspect.signature(getattr(autograd, name)).parameters
        assert list(a) == list(b), f"{family}.{name}: {list(a)} vs {list(b)}"
        assert [p.default for p in a.values()] == [p.default for p in b.values()], f"{family}.{name} defaults"


@pytest.mark.parametrize("name", NAMES)
def test_tape_twin_names_the_intermediates_the_autograd_twin_taps(name: str) -> None:
    model = MODELS[name]
    params, (X, Y) = _problem(model, 0)
    with recording() as tapes:
        model.autograd.loss({k: torch.tensor(v, requires_grad=True) for k, v in params.items()},
                            torch.tensor(X), torch.tensor(Y))  # fmt: skip
    loss = tape_twin(model).loss({k: Tensor(v, requires_grad=True) for k, v in params.items()}, X, Y)
    named = [node.name for node in graph(loss) if node.name is not None]
    assert named == list(reversed(tapes.names()))  # the same names, in backward order


@pytest.mark.parametrize("name", NAMES)
def test_tape_loss_and_predict_equal_the_manual_twins(name: str) -> None:
    model = MODELS[name]
    tape = tape_twin(model)
    for seed in SEEDS:
        params, (X, Y) = _problem(model, seed)
        leaves = {k: Tensor(v) for k, v in params.items()}
        hand = float(model.manual.loss(params, X, Y))
        ours = float(tape.loss(leaves, X, Y).item())
        assert ours == pytest.approx(hand, rel=1e-12, abs=1e-300)
        if model.task == "classification":
            np.testing.assert_array_equal(tape.predict(leaves, X), model.manual.predict(params, X))
        else:
            np.testing.assert_allclose(tape.predict(leaves, X).data, model.manual.predict(params, X), rtol=1e-13)


# ---- three-way parity ---------------------------------------------------------------------------


def _report(twin: Any, model: Model, params: dict[str, np.ndarray], arrays: tuple[Any, ...], dtype: str) -> Any:
    return check_gradients(twin, model.autograd.loss, params, arrays, dtype=dtype, label="twin")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_tape_manual_and_autograd_agree_with_finite_differences(name: str, dtype: str) -> None:
    """Three ways: tape vs autograd and manual vs autograd, each with float64 finite differences as referee."""
    model = MODELS[name]
    tape = tape_twin(model)
    for seed in SEEDS:
        params, arrays = _problem(model, seed)
        for label, twin in (("tape", tape.gradients), ("manual", model.manual.gradients)):
            report = _report(twin, model, params, arrays, dtype)
            assert report.ok, f"{label} twin, seed {seed}:\n{report}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", [n for n in NAMES if MODELS[n].weights])
def test_weighted_tape_twins_agree(name: str, dtype: str) -> None:
    model = MODELS[name]
    tape = tape_twin(model)
    for seed in SEEDS:
        params, arrays = _problem(model, seed, weighted=True)
        for label, twin in (("tape", tape.gradients), ("manual", model.manual.gradients)):
            report = _report(twin, model, params, arrays, dtype)
            assert report.ok, f"{label} twin, weighted, seed {seed}:\n{report}"


def test_a_tape_twin_with_a_wrong_loss_is_caught() -> None:
    """The check can fail: a tape twin that forgets the mean's 1/n is reported, the real one is not."""
    model = MODELS["linear"]
    params, arrays = _problem(model, 1)

    def forgets_the_mean(p: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
        leaves = {k: Tensor(v, requires_grad=True) for k, v in p.items()}
        residual = linear.predict(leaves, X) - Y
        (residual * residual).sum().backward()
        return {k: leaf.grad for k, leaf in leaves.items()}

    assert _report(linear.gradients, model, params, arrays, "float64").ok
    report = _report(forgets_the_mean, model, params, arrays, "float64")
    assert not report.ok and {p.name for p in report.params if not p.ok} == {"w", "b"}


# ---- training histories -------------------------------------------------------------------------


def _run(gradients: Any, params: dict[str, np.ndarray], arrays: tuple[Any, ...], lr: float, steps: int) -> Any:
    """The parameters at every step of p -= lr * g: name -> (steps + 1, *shape)."""
    p = dict(params)
    history = {k: [v] for k, v in p.items()}
    for _ in range(steps):
        g = gradients(p, *arrays)
        p = {k: v - v.dtype.type(lr) * np.asarray(g[k], dtype=v.dtype) for k, v in p.items()}
        for k, v in p.items():
            history[k].append(v)
    return {k: np.stack(v) for k, v in history.items()}


def _lr(model: Model, X: np.ndarray, weight: Any) -> float:
    """Half the stable rate of a quadratic loss, 1/L of a convex L-smooth one, else the model's default."""
    stable = model.stable_lr(X, weight)
    if stable is not None and np.isfinite(stable):
        return 0.5 * stable
    curvature = model.curvature(X, weight)
    return 1.0 / curvature if curvature else model.default_lr


def _history_excess(model: Model, tape_gradients: Any, dtype: str, steps: int = 50) -> float:
    """The largest |tape - manual| / drift bound over the steps and parameters of two free runs from one start."""
    params, arrays = _problem(model, 5, weighted=model.weights)
    X, Y = arrays[0], arrays[1]
    weight = arrays[2] if len(arrays) > 2 else None
    lr = _lr(model, X, weight)
    dt = np.dtype(dtype)
    cast = tuple(a.astype(dt) if a.dtype.kind == "f" else a for a in arrays)
    start = {k: v.astype(dt) for k, v in params.items()}
    hand = _run(model.manual.gradients, start, cast, lr, steps)
    ours = _run(tape_gradients, start, cast, lr, steps)
    bound = drift_tolerance(model, hand, X, Y, dt, lr, [None] * steps, weight=weight)  # (steps + 1,), 0 at the start
    for k in hand:
        assert np.array_equal(ours[k][0], hand[k][0])
    return max(
        float(np.max(np.abs(ours[k] - hand[k]).reshape(steps + 1, -1).max(axis=1)[1:] / bound[1:])) for k in hand
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_tape_training_history_matches_the_manual_twins_step_by_step(name: str, dtype: str) -> None:
    """50 steps of p -= lr * g from the same start: every parameter of the tape run within the drift bound
    of the manual run at every step; and at three steps of the manual run, the gradients within the gradient bound."""
    model = MODELS[name]
    tape = tape_twin(model)
    excess = _history_excess(model, tape.gradients, dtype)
    assert excess <= 1.0, f"the tape run left the drift bound: max |tape - manual| / bound = {excess:.3g}"
    params, arrays = _problem(model, 5, weighted=model.weights)
    dt = np.dtype(dtype)
    cast = tuple(a.astype(dt) if a.dtype.kind == "f" else a for a in arrays)
    weight = arrays[2] if len(arrays) > 2 else None
    hand = _run(
        model.manual.gradients, {k: v.astype(dt) for k, v in params.items()}, cast, _lr(model, arrays[0], weight), 50
    )
    for t in (0, 25, 50):
        p_t = {k: v[t] for k, v in hand.items()}
        g_hand = model.manual.gradients(p_t, *cast)
        g_ours = tape.gradients(p_t, *cast)
        _, tol = gradient_tolerance(model, p_t, arrays[0], arrays[1], dt, weight=weight)
        for k in p_t:
            err = np.max(np.abs(np.asarray(g_ours[k], np.float64) - np.asarray(g_hand[k], np.float64)) - tol[k])
            assert err <= 0, f"{k} at step {t}: tape and manual gradients differ beyond the bound by {err:.3g}"


@pytest.mark.parametrize("name", ["linear", "logistic", "mlp"])
def test_a_tape_twin_off_by_one_part_in_a_billion_leaves_the_drift_bound(name: str) -> None:
    model = MODELS[name]
    tape = tape_twin(model)

    def off(p: dict[str, Any], *arrays: Any) -> dict[str, Any]:
        return {k: g * (1 + 1e-9) for k, g in tape.gradients(p, *arrays).items()}

    assert _history_excess(model, off, "float64") > 1.0
