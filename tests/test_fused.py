"""The one-pass fused manual twins (logistic, softmax, mlp) against the readable twins, and their memory."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import DTYPES
from gradtwin.data import Dataset, synthetic_classes
from gradtwin.models import MODELS, Model, mlp
from gradtwin.parity.drift import drift_tolerance, gradient_tolerance
from gradtwin.parity.rounding import tolerance
from gradtwin.training import ManualEngine, train, update
from gradtwin.training import fused as fused_module
from gradtwin.training.engines import Engine
from gradtwin.training.fused import MAX_ROWS, WHOLE_ROWS, FusedLinear, FusedLogistic, FusedMLP, FusedSoftmax

FUSED = ["logistic", "softmax", "mlp", "mlp-relu", "mlp-sigmoid"]
KIND = {"logistic": FusedLogistic, "softmax": FusedSoftmax} | {name: FusedMLP for name in FUSED[2:]}
# each fused model without weights, and those that take weights with them too
RUNS = [(name, False) for name in FUSED] + [("logistic", True), ("softmax", True)]
Arrays = dict[str, np.ndarray]


def _model(name: str, hidden: int = 4) -> Model:
    """The registered model; the mlp at `hidden` units with the registered activation."""
    model = MODELS[name]
    return mlp(hidden, model.options["activation"]) if "activation" in model.options else model


def _problem(
    name: str, seed: int, n: int, d: int, k: int, hidden: int, x_exp: float, p_exp: float, weighted: bool
) -> tuple[Model, Arrays, Dataset]:
    """Features at 10^x_exp, standard-normal parameters at 10^p_exp, labels 0..k-1, weights or none."""
    model = _model(name, hidden)
    rng = np.random.default_rng(seed)
    k = 2 if name == "logistic" else k
    X = 10.0**x_exp * (rng.standard_normal((n, d)) + rng.standard_normal(d))  # (n, d)
    Y = rng.integers(0, k, size=n).astype(np.int64)  # (n,)
    Y[0] = k - 1  # the shapes are read from the largest label
    weight = rng.uniform(0.0, 3.0, n) if weighted and model.weights else None  # (n,)
    data = Dataset(X, Y, name="drawn", weight=weight)
    params = {p: 10.0**p_exp * rng.standard_normal(s) for p, s in model.param_shapes(data).items()}
    return model, params, data


def _in(dtype: str, params: Arrays, data: Dataset) -> tuple[Arrays, np.ndarray, np.ndarray, np.ndarray | None]:
    """Parameters, X, Y and the weights as an engine in `dtype` holds them (labels stay int64)."""
    p = {k: np.array(v, dtype=dtype) for k, v in params.items()}
    V = None if data.weight is None else data.weight.astype(dtype)
    return p, data.X.astype(dtype), data.Y, V


def _split(fused: Any, blocks: int) -> None:
    """Force `blocks` row blocks (at most the buffers' rows each), so that partial sums are added."""
    n = fused.X.shape[0]
    rows = max(1, -(-n // blocks))
    fused.blocks = [(s, min(n, s + rows)) for s in range(0, n, rows)]
    fused.whole = len(fused.blocks) == 1  # as the constructor sets it: the sums are divided, not each block


def _mismatches(model: Model, fused: Any, params: Arrays, data: Dataset, dtype: str) -> list[str]:
    """What of the fused loss and gradients lies outside the two-implementation rounding bound of the readable twin's.

    The bound is `parity.drift.gradient_tolerance`: 2 gamma(K + ops) * sum|terms| for the loss and
    each gradient element, evaluated at the values both computations see (rounded to `dtype`).
    """
    p, X, Y, V = _in(dtype, params, data)
    kw = {} if V is None else {"weight": V}
    value, grads = fused.loss_and_gradients()
    grads = {k: np.array(g) for k, g in grads.items()}  # the buffers are overwritten by the next call
    again = fused.loss()
    ref_loss = float(model.manual.loss(p, X, Y, **kw))
    ref = model.manual.gradients(p, X, Y, **kw)
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    V64 = None if V is None else V.astype(np.float64)
    loss_tol, grad_tol = gradient_tolerance(model, p64, X.astype(np.float64), Y, dtype, weight=V64)
    wrong = []
    for label, got in (("loss", value), ("loss()", again)):
        if not np.isfinite(float(got)) or abs(float(got) - ref_loss) > float(loss_tol):
            wrong.append(f"{label}: {float(got)!r} vs {ref_loss!r}, tolerance {float(loss_tol):.3g}")
        if np.asarray(got).dtype != np.dtype(dtype):
            wrong.append(f"{label} in {np.asarray(got).dtype}")
    if set(grads) != set(ref):
        wrong.append(f"keys {sorted(grads)} vs {sorted(ref)}")
    for k in ref:
        g, r = grads[k], np.asarray(ref[k])
        if g.shape != r.shape or g.dtype != np.dtype(dtype) or not np.all(np.isfinite(g)):
            wrong.append(f"{k}: shape {g.shape} dtype {g.dtype} finite {np.all(np.isfinite(g))}")
            continue
        excess = np.abs(g.astype(np.float64) - r) - grad_tol[k]
        if np.any(excess > 0):
            i = np.unravel_index(int(np.argmax(excess)), excess.shape)
            wrong.append(f"{k}{list(i)}: {g[i]!r} vs {r[i]!r}, tolerance {float(np.asarray(grad_tol[k])[i]):.3g}")
    return wrong


def _fused(model: Model, params: Arrays, data: Dataset, dtype: str) -> Any:
    """The engine's bound path for `model` on NumPy arrays in `dtype`: must be the fused one."""
    p, X, Y, V = _in(dtype, params, data)
    bound = ManualEngine(model, dtype).bind(p, X, Y, V)
    assert isinstance(bound, KIND[model.name]), type(bound).__name__
    return bound


def _clear_of_relu_kink(model: Model, params: Arrays, data: Dataset) -> bool:
    """No pre-activation so near 0 that two roundings of it may fall on either side of relu's kink."""
    if model.options.get("activation") != "relu":
        return True
    A = data.X @ params["W1"] + params["b1"]  # (n, h)
    reach = tolerance(np.float32, data.X.shape[1] + 1, np.abs(data.X) @ np.abs(params["W1"]) + np.abs(params["b1"]))
    return bool(np.all(np.abs(A) > 4 * reach))


# ---- the fused paths against the readable twins --------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FUSED)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 50),
    d=st.integers(1, 5),
    k=st.integers(2, 10),
    hidden=st.integers(1, 6),
    x_exp=st.floats(-1.0, 1.5),
    p_exp=st.floats(-2.0, 1.5),
    weighted=st.booleans(),
    blocks=st.integers(1, 5),
)
def test_fused_equals_the_readable_twin_at_drawn_shapes(
    name: str, dtype: str, seed: int, n: int, d: int, k: int, hidden: int, x_exp: float, p_exp: float,
    weighted: bool, blocks: int,
) -> None:  # fmt: skip
    """Loss, loss() and every gradient within the rounding bound, in one block or several (n not a multiple)."""
    model, params, data = _problem(name, seed, n, d, k, hidden, x_exp, p_exp, weighted)
    assume(_clear_of_relu_kink(model, params, data))
    fused = _fused(model, params, data, dtype)
    _split(fused, blocks)
    assert not _mismatches(model, fused, params, data, dtype)


SIZES = {"1": lambda r: 1, "5": lambda r: 5, "block-1": lambda r: r - 1, "block": lambda r: r}
SIZES |= {"block+1": lambda r: r + 1, "2 blocks+37": lambda r: 2 * r + 37}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("size", list(SIZES))
def test_fused_equals_the_readable_twin_around_the_real_block_size(name: str, dtype: str, size: str) -> None:
    """The engine's own blocks: n below one block, exactly one, one row over (one block of all rows where they
    are at most WHOLE_ROWS), and a short last block."""
    model, params, data = _problem(name, len(size), 2 * MAX_ROWS + 37, 3, 3, 5, 0.0, 0.0, weighted=True)
    rows = _fused(model, params, data, dtype).rows  # the block size this model's widths give
    assert 0 < rows <= MAX_ROWS
    n = SIZES[size](rows)
    weight = None if data.weight is None else data.weight[:n]
    data = Dataset(data.X[:n], data.Y[:n], name="drawn", weight=weight)
    fused = _fused(model, params, data, dtype)
    one = n <= WHOLE_ROWS and n <= 2 * rows  # all rows in twice a block's bytes: one block
    expected = [(0, n)] if one else [(s, min(n, s + rows)) for s in range(0, n, rows)]
    assert fused.blocks == expected
    assert not _mismatches(model, fused, params, data, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", range(2, 11))
@pytest.mark.parametrize("name", ["softmax", "mlp", "mlp-relu", "mlp-sigmoid"])
def test_every_class_count_from_2_to_10(name: str, k: int, dtype: str) -> None:
    model, params, data = _problem(name, k, 40, 3, k, 4, 0.0, 0.0, weighted=True)
    if not _clear_of_relu_kink(model, params, data):  # a seeded draw: move b1 off the kink, not skip the case
        params["b1"] = params["b1"] + 0.5
    fused = _fused(model, params, data, dtype)
    _split(fused, 3)
    assert not _mismatches(model, fused, params, data, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("columns", [1, fused_module.COLUMNS])
def test_row_reductions_by_columns_and_by_numpy_agree(
    columns: int, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head reduces rows (and scales them) column by column up to COLUMNS (BY_COLUMNS) classes, by NumPy's
    reduce (broadcast) above or in blocks shorter than SHORT: both agree."""
    monkeypatch.setattr(fused_module, "COLUMNS", columns)
    monkeypatch.setattr(fused_module, "BY_COLUMNS", columns)
    monkeypatch.setattr(fused_module, "SHORT", 0)  # the test's short blocks take the column-by-column branch too
    for weighted in (False, True):
        model, params, data = _problem("softmax", 7, 40, 3, 5, 4, 0.0, 0.0, weighted=weighted)
        fused = _fused(model, params, data, dtype)
        _split(fused, 3)
        assert not _mismatches(model, fused, params, data, dtype)
    Z = np.random.default_rng(1).standard_normal((9, 5)).astype(dtype)
    out = np.empty(9, dtype=dtype)
    fused_module._row_reduce(np.maximum, Z, out)
    assert np.array_equal(out, Z.max(axis=1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("magnitude", [1e3, 1e5, 1e7])
@pytest.mark.parametrize("name", FUSED)
def test_extreme_logits_stay_finite_and_agree(name: str, magnitude: float, dtype: str) -> None:
    """Logits of 1e3..1e7 (saturated sigmoids, one-hot softmaxes): finite, and within the bound of the readable twin."""
    model, params, data = _problem(name, 11, 30, 2, 3, 3, 0.0, 0.0, weighted=True)
    last = "w" if name == "logistic" else "W" if name == "softmax" else "W2"
    params[last] = magnitude * params[last] / np.max(np.abs(params[last]))  # logits of order `magnitude`
    if name.startswith("mlp"):
        params["b1"] = params["b1"] + 0.25  # keep the relu units off the kink
    p, X, Y, V = _in(dtype, params, data)
    kw = {} if V is None else {"weight": V}
    readable = float(model.manual.loss(p, X, Y, **kw))
    assert np.isfinite(readable) and readable > magnitude / 1e3  # some samples are wrong by ~magnitude
    fused = _fused(model, params, data, dtype)
    _split(fused, 2)
    with np.errstate(all="raise", under="ignore"):  # no overflow, no NaN on the way
        assert not _mismatches(model, fused, params, data, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logistic_extreme_logits_are_exact(dtype: str) -> None:
    """Logits +-1e7: a right answer costs 0, a wrong one 1e7; dL/dz = (sigma(z) - y)/n is 0 or +-1/n."""
    X = np.array([[1.0], [-1.0], [1.0], [-1.0]], dtype=dtype)  # (4, 1)
    Y = np.array([1, 0, 0, 1], dtype=np.int64)  # z = +M, -M, +M, -M: right, right, wrong, wrong
    p = {"w": np.array([1e7], dtype=dtype), "b": np.array(0.0, dtype=dtype)}
    value, grads = FusedLogistic(p, X, Y).loss_and_gradients()
    assert float(value) == pytest.approx(2 * 1e7 / 4, rel=1e-6)
    assert float(grads["w"][0]) == pytest.approx(0.5) and float(grads["b"]) == pytest.approx(0.0, abs=1e-7)


# ---- a lost or doubled block is caught -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FUSED)
def test_a_lost_or_doubled_block_is_caught(name: str, dtype: str) -> None:
    """The parity check above fails when one block's contribution is dropped or counted twice."""
    model, params, data = _problem(name, 3, 37, 3, 3, 4, 0.0, 0.0, weighted=True)
    fused = _fused(model, params, data, dtype)
    _split(fused, 4)
    honest = list(fused.blocks)
    assert not _mismatches(model, fused, params, data, dtype)  # the real blocking passes first
    assert [s for s, _ in honest] == [0] + [e for _, e in honest[:-1]] and honest[-1][1] == data.n  # each row once
    for planted in (honest[:1] + honest[2:], honest + honest[1:2]):  # block 1 lost, block 1 doubled
        fused.blocks = planted
        assert _mismatches(model, fused, params, data, dtype)


# ---- the engine chooses the fused paths, and trains with them as with the readable twin -----------


class _ReadableEngine(ManualEngine):
    """The manual engine with the readable twin's loss and gradients every step (no fused path)."""

    def bind(self, params: Any, X: Any, Y: Any, weight: Any = None) -> Any:
        return Engine.bind(self, params, X, Y, weight)


@pytest.mark.parametrize("name", FUSED)
def test_the_engine_binds_the_fused_path_only_for_its_own_twin_on_numpy(name: str) -> None:
    model, params, data = _problem(name, 0, 20, 2, 3, 3, 0.0, 0.0, weighted=True)
    p, X, Y, V = _in("float64", params, data)
    assert isinstance(ManualEngine(model).bind(p, X, Y, V), KIND[name])
    assert isinstance(ManualEngine(model).bind(p, X, Y, None), KIND[name])
    planted = SimpleNamespace(**{k: v for k, v in vars(model.manual).items() if not k.startswith("__")})
    assert not isinstance(ManualEngine(replace(model, manual=planted)).bind(p, X, Y, V), KIND[name])
    torch_engine = ManualEngine(model, array="torch")
    tp = torch_engine.params(params)
    bound = torch_engine.bind(tp, torch_engine.asarray(data.X), torch_engine.asarray(data.Y), None)
    assert not isinstance(bound, KIND[name])
    # the linear model keeps its rule: fused unweighted, the readable functions with weights
    lin = MODELS["linear"]
    Xl, Yl = data.X, data.X[:, 0] * 2.0
    pl = {"w": np.zeros(2), "b": np.asarray(0.0)}
    assert isinstance(ManualEngine(lin).bind(pl, Xl, Yl), FusedLinear)
    assert not isinstance(ManualEngine(lin).bind(pl, Xl, Yl, np.ones(data.n)), FusedLinear)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "weighted"), RUNS)
def test_training_gives_the_readable_twins_history(
    name: str, weighted: bool, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fused and readable runs from the same start: every step within the drift bound (`parity.drift`)."""
    monkeypatch.setattr(fused_module, "MAX_ROWS", 16)  # 60 rows in 4 blocks, the last one short
    model = _model(name, 6)
    data = synthetic_classes(n=60, d=3, k=2 if name == "logistic" else 4, seed=3, scale=2.0)
    weight = np.random.default_rng(4).uniform(0.2, 3.0, data.n) if weighted else None
    data = Dataset(data.X, data.Y, name="drawn", weight=weight)
    Xt = np.hstack([data.X, np.ones((data.n, 1))])  # (n, d + 1)
    lr = 1.0 / (0.5 * float(np.max(np.sum(Xt**2, axis=1)))) if name in ("logistic", "softmax") else 0.5
    fused_run = train(ManualEngine(model, dtype), data, lr, 40)
    readable_run = train(_ReadableEngine(model, dtype), data, lr, 40)
    assert fused_run.stop_reason == readable_run.stop_reason == "iterations"
    history = readable_run.history
    steps = history.iteration.size - 1
    X = data.X.astype(dtype).astype(np.float64)
    V = None if weight is None else weight.astype(dtype).astype(np.float64)
    bound = drift_tolerance(model, history.params, X, data.Y, np.dtype(dtype), lr, [None] * steps, weight=V)
    travelled = max(float(np.max(np.abs(v[-1] - v[0]))) for v in history.params.values())
    assert bound[-1] < 0.1 * travelled  # the bound could fail: a run a tenth of the way elsewhere is caught
    for k, v in history.params.items():
        diff = np.abs(fused_run.history.params[k] - v).reshape(bound.size, -1).max(axis=1)
        worst = int(np.argmax(diff - bound))
        assert np.all(diff <= bound), f"{k}: step {worst} differs by {diff[worst]:.3g}, bound {bound[worst]:.3g}"
    np.testing.assert_allclose(fused_run.history.loss, history.loss, rtol=1e-3 if dtype == "float32" else 1e-9)
    assert fused_run.loss < fused_run.history.loss[0]  # and it did learn


# ---- memory: nothing of size n per iteration -----------------------------------------------------


def _step_peak(model: Model, n: int, weighted: bool, engine: type[ManualEngine] = ManualEngine) -> int:
    """Peak bytes traced while three bound steps run (after one warm-up step), at n x 4 float64."""
    _, params, data = _problem(model.name, 5, n, 4, 3, 8, 0.0, -0.5, weighted)
    p, X, Y, V = _in("float64", params, data)
    bound = engine(model).bind(p, X, Y, V)
    update(p, bound.loss_and_gradients()[1], 0.01)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for _ in range(3):
            update(p, bound.loss_and_gradients()[1], 0.01)
        bound.loss()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("name", "weighted"), RUNS)
def test_per_iteration_memory_does_not_grow_with_n(name: str, weighted: bool) -> None:
    """A bound step at n = 200,000 allocates well under one n-sized float64 array, and no more than at 20,000."""
    model = _model(name, 8)
    n = 200_000
    one_array = 8 * n  # bytes of one (n,) float64 array
    big, small = _step_peak(model, n, weighted), _step_peak(model, n // 10, weighted)
    # what remains are NumPy's own ufunc buffers (8,192 elements) for broadcast operands: a fixed size
    assert big < 0.1 * one_array, f"peak {big:,} bytes per step at n = {n:,}"
    assert big < small + 0.005 * one_array, f"peak {big:,} bytes at n = {n:,}, {small:,} at {n // 10:,}"
    # the readable twin's step at the same size does allocate n-sized arrays: the measurement can fail
    assert _step_peak(model, n, weighted, _ReadableEngine) > one_array


def test_labels_outside_the_classes_are_refused_naming_them() -> None:
    """The head indexes Z.ravel() by i*k + Y_i: a label outside 0..k-1 is refused at the start, not clipped."""
    X = np.ones((4, 2))
    params = {"W": np.zeros((2, 3)), "b": np.zeros(3)}
    with pytest.raises(ValueError, match=r"Y must hold class labels 0\.\.2; got labels from 0 to 3"):
        FusedSoftmax(params, X, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="activation must be one of tanh, relu, sigmoid; got 'gelu'"):
        FusedMLP(
            {"W1": np.zeros((2, 2)), "b1": np.zeros(2), "W2": np.zeros((2, 3)), "b2": np.zeros(3)}, X, X[:, 0], "gelu"
        )
