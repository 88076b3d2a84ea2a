"""The multivariate linear twins: gradient parity, finite differences, whole histories, planted bugs."""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DTYPES, assert_parity, caught, plant
from gradtwin.data import Dataset, standardize
from gradtwin.manual import linear as manual_linear
from gradtwin.models import MODELS
from gradtwin.parity.drift import drift_tolerance
from gradtwin.parity.reference import least_squares
from gradtwin.parity.rounding import tolerance
from gradtwin.parity.scales import gradient_scale, loss_scale, rounding_terms
from gradtwin.training import make_engine, train, update
from gradtwin.training.fused import FusedLinear
from gradtwin.training.loop import History

MODEL = MODELS["linear"]
FAST = settings(max_examples=12, deadline=None)


def _problem(seed: int, n: int, d: int) -> tuple[dict[str, np.ndarray], Dataset]:
    """Correlated columns at mixed scales and offsets, parameters at a random scale."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 10.0 ** rng.uniform(-1, 1, d) + rng.normal(
        size=d
    )  # (n, d)
    Y = X @ rng.standard_normal(d) + rng.standard_normal(n)  # (n,)
    params = {"w": rng.standard_normal(d) * 10.0 ** rng.uniform(-2, 2), "b": np.asarray(rng.standard_normal())}
    return params, Dataset(X, Y, name="drawn")


def _rounded(data: Dataset, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """X and Y rounded to `dtype`, in float64: the data both runs in `dtype` actually see."""
    return data.X.astype(dtype).astype(np.float64), data.Y.astype(dtype).astype(np.float64)


def _drift(history: History, data: Dataset, lr: float, dtype: str, implementations: int) -> np.ndarray:
    """`drift_tolerance` along a full-batch history recorded at every iteration, on data rounded to `dtype`."""
    assert np.array_equal(history.iteration, np.arange(history.iteration.size))  # recorded at every step
    X, Y = _rounded(data, dtype)
    steps = [None] * (history.iteration.size - 1)
    return drift_tolerance(MODEL, history.params, X, Y, dtype, lr, steps, implementations=implementations)


@FAST
@given(
    seed=st.integers(0, 2**31), n=st.integers(1, 60), d=st.integers(1, 6), dtype=st.sampled_from(["float32", "float64"])
)
def test_twins_agree_at_drawn_shapes(seed: int, n: int, d: int, dtype: str) -> None:
    params, data = _problem(seed, n, d)
    checks = assert_parity(MODEL, params, data, dtype)
    assert {c.comparison for c in checks} >= {"manual vs autograd", "manual float64 vs finite diff"}


def test_gradient_shapes_follow_the_parameters() -> None:
    params, data = _problem(0, 20, 4)
    grads = MODEL.manual.gradients(params, data.X, data.Y)
    assert grads["w"].shape == (4,) and np.shape(grads["b"]) == ()
    assert MODEL.manual.hessian(data.X).shape == (5, 5)
    assert rounding_terms(MODEL, data.X, params) == 20 + 4 + 2


def test_hessian_is_the_jacobian_of_the_gradient() -> None:
    """The Hessian that sets the stable lr, checked against differences of exact gradients."""
    params, data = _problem(3, 30, 3)
    H = MODEL.manual.hessian(data.X)
    flat = np.concatenate([params["w"], [params["b"]]])

    def grad(v: np.ndarray) -> np.ndarray:
        g = MODEL.manual.gradients({"w": v[:-1], "b": np.asarray(v[-1])}, data.X, data.Y)
        return np.concatenate([g["w"], [g["b"]]])

    # the gradient is affine, so a unit difference is exact up to rounding of each term
    columns = np.stack([grad(flat + e) - grad(flat) for e in np.eye(4)], axis=1)
    scale = gradient_scale(MODEL, params, data.X, data.Y)
    bound = 4 * tolerance(np.float64, 36, max(float(np.max(scale["w"])), float(scale["b"])) + np.abs(H).max())
    np.testing.assert_allclose(columns, H, rtol=0, atol=bound)


@pytest.mark.parametrize("blocks", [1, 3])
@FAST
@given(
    seed=st.integers(0, 2**31), n=st.integers(3, 80), d=st.integers(1, 6), dtype=st.sampled_from(["float32", "float64"])
)
def test_fused_path_equals_the_readable_gradients(blocks: int, seed: int, n: int, d: int, dtype: str) -> None:
    """`FusedLinear` then `update` is `loss`, `gradients` and `p -= lr * g`, up to the rounding of the same sums."""
    params, data = _problem(seed, n, d)
    X, Y = data.X.astype(dtype), data.Y.astype(dtype)
    p = {k: np.array(v, dtype=dtype) for k, v in params.items()}
    ref_loss = MODEL.manual.loss(p, X, Y)
    ref_grads = MODEL.manual.gradients(p, X, Y)
    lr = 0.01
    fused = FusedLinear(p, X, Y)
    if blocks > 1:  # force several row blocks, each with its own partial sums
        rows = -(-n // blocks)
        fused.blocks = [(s, min(n, s + rows)) for s in range(0, n, rows)]
    before = {k: v.copy() for k, v in p.items()}
    value, grads = fused.loss_and_gradients()
    update(p, grads, lr)
    p64 = {k: v.astype(np.float64) for k, v in before.items()}
    K = rounding_terms(MODEL, data.X, p64)
    loss_tol = 2 * tolerance(dtype, K, loss_scale(MODEL, p64, data.X, data.Y))
    assert abs(float(value) - float(ref_loss)) <= loss_tol
    scale = gradient_scale(MODEL, p64, data.X, data.Y)
    u = float(np.finfo(dtype).eps) / 2
    for name in p:
        expected = before[name] - lr * ref_grads[name]
        # each gradient within its rounding bound of the exact one, plus one rounding per update
        tol = lr * 2 * tolerance(dtype, K, scale[name]) + 4 * u * (np.abs(expected) + lr * np.abs(ref_grads[name]))
        assert np.all(np.abs(p[name] - expected) <= tol), name
        assert p[name].dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_whole_histories_agree_step_by_step(dtype: str) -> None:
    """Both twins from the same start, every iteration within the derived accumulated bound."""
    data = MODEL.default_data()
    lr = 0.2  # below 2 / lambda_max = 0.2485 for this data, so errors cannot grow
    runs = [train(make_engine(e, MODEL, dtype), data, lr, iterations=150, seed=1) for e in ("manual", "autograd")]
    manual, autograd = (r.history for r in runs)
    assert manual.iteration.size == autograd.iteration.size == 151
    bound = _drift(manual, data, lr, dtype, implementations=2)  # (151,) two runs: twice one run's bound
    diff = np.sqrt(
        np.sum((manual.params["w"] - autograd.params["w"]) ** 2, axis=1)
        + (manual.params["b"] - autograd.params["b"]) ** 2
    )
    assert np.all(diff <= bound), f"worst step {int(np.argmax(diff - bound))}"
    assert bound[-1] > 0 and diff.max() > 0  # the bound is not vacuous and the runs did round differently


def test_training_reaches_least_squares_at_the_predicted_rate() -> None:
    """At lr = 2/(lam_min+lam_max) the error shrinks by (kappa-1)/(kappa+1) per step, up to rounding."""
    rng = np.random.default_rng(5)
    data = standardize(Dataset(rng.standard_normal((200, 4)), rng.standard_normal(200) + 1.0, name="drawn"))
    data = Dataset(data.X, data.Y + data.X @ np.array([1.0, -2.0, 0.5, 3.0]), name="drawn")
    lam = np.linalg.eigvalsh(MODEL.manual.hessian(data.X))
    lr = 2.0 / (lam[0] + lam[-1])
    rate = (lam[-1] - lam[0]) / (lam[-1] + lam[0])
    best = least_squares(data)
    p_star = np.concatenate([best["w"], [best["b"]]])
    k = 120
    for engine in ("manual", "autograd"):
        result = train(make_engine(engine, MODEL), data, lr, iterations=k)
        p = np.concatenate([result.params["w"], [result.params["b"]]])
        rounding = _drift(result.history, data, lr, "float64", implementations=1)[-1]  # one run vs the exact one
        assert np.linalg.norm(p - p_star) <= rate**k * np.linalg.norm(p_star) + rounding + 1e-14 * np.linalg.norm(
            p_star
        )


def _reversed_rows(params, X, Y):  # pairs residual i with row n-1-i: X.T @ dpred on the wrong axis order
    xp = array_namespace(X, Y)
    dpred = (2.0 / X.shape[0]) * (manual_linear.predict(params, X) - Y)
    return {"w": xp.flip(dpred, axis=0) @ X, "b": xp.sum(dpred)}


def _lost_one_over_n(params, X, Y):
    xp = array_namespace(X, Y)
    dpred = 2.0 * (manual_linear.predict(params, X) - Y)
    return {"w": dpred @ X, "b": xp.sum(dpred)}


def _sign_flip(params, X, Y):
    g = manual_linear.gradients(params, X, Y)
    return {"w": -g["w"], "b": -g["b"]}


def _dropped_bias(params, X, Y):
    g = manual_linear.gradients(params, X, Y)
    return {"w": g["w"], "b": 0.0 * g["b"]}


@pytest.mark.parametrize("bug", [_reversed_rows, _lost_one_over_n, _sign_flip, _dropped_bias])
@pytest.mark.parametrize("dtype", DTYPES)
def test_planted_bugs_are_caught(bug: object, dtype: str) -> None:
    params, data = _problem(11, 40, 3)
    failed = caught(MODEL, params, data, plant(MODEL, gradients=bug), dtype)  # the real twin passes the same point
    assert failed, f"{bug} went unnoticed"
    assert all(name != "loss" for _, name in failed)  # the loss is right; the gradient is not


def test_registry_data() -> None:
    data = MODEL.default_data()
    assert data.X.shape == (442, 10) and data.standardized
    np.testing.assert_allclose(data.X.mean(axis=0), 0, atol=1e-12)
    random = MODEL.random_data(np.random.default_rng(0))
    assert random.X.ndim == 2 and MODEL.param_shapes(random)["w"] == (random.X.shape[1],)
