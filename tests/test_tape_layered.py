"""The tape twins of the three models made of layers (cnn, charmlp, transformer) and the engine ops they need.

The twins are held to autograd by the checker (`check_gradients`, derived tolerances, float64 finite
differences as referee) at random problems of the registry's kind (`model_check.random_problem`, which
keeps each model's `admissible` test) in float64 and float32; their named steps to the hand derivation
by `explain(..., engine="tape")`; their 20-step training histories to the manual twin's within the drift
bound. The new ops (`ops.pad`, `ops.max`, whose gradient goes to the first maximum as torch.max(dim)
sends it) are held to torch float64 under a random upstream gradient; both copy values and gradients,
so they must agree exactly. Planted bugs in copies of the new ops and of a tape twin must be caught.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import textwrap
import types
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

from conftest import DTYPES
from gradtwin.autodiff import Tensor, graph, ops
from gradtwin.data import Dataset
from gradtwin.data.names import synthetic_names
from gradtwin.errors import UsageError
from gradtwin.models import MODELS, Model, charmlp, cnn, transformer
from gradtwin.parity.drift import drift_tolerance
from gradtwin.parity.gradcheck import check_gradients
from gradtwin.parity.model_check import random_problem
from gradtwin.steps.explain import explain
from gradtwin.steps.tap import recording
from gradtwin.tape import charmlp as tape_charmlp
from gradtwin.tape import cnn as tape_cnn
from gradtwin.tape import transformer as tape_transformer
from gradtwin.training import make_engine, train

TAPE = {"cnn": tape_cnn, "charmlp": tape_charmlp, "transformer": tape_transformer}
LAYERED = list(TAPE)
Params = dict[str, np.ndarray]


def _functions(m: types.ModuleType) -> list[str]:
    """The public functions `m` defines itself, in its order."""
    return [n for n, v in vars(m).items() if inspect.isfunction(v) and v.__module__ == m.__name__ and n[0] != "_"]


@functools.cache
def problems(name: str, count: int, seed: int = 0) -> list[tuple[Params, Dataset]]:
    """`count` random problems of the registry's kind for model `name` (admissible: no kink within reach)."""
    model, rng = MODELS[name], np.random.default_rng(seed)
    return [random_problem(model, rng) for _ in range(count)]


def leaves(params: Params, requires_grad: bool = False) -> dict[str, Tensor]:
    return {k: Tensor(v, requires_grad=requires_grad) for k, v in params.items()}


# ---- the twin contract and the registry -------------------------------------------------------------


@pytest.mark.parametrize("family", LAYERED)
def test_tape_twin_defines_the_autograd_twins_names_in_order_with_the_same_signatures(family: str) -> None:
    tape, model = TAPE[family], MODELS[family]
    autograd = importlib.import_module(f"gradtwin.autograd.{family}")
    manual = importlib.import_module(f"gradtwin.manual.{family}")
    ours, theirs = _functions(tape), _functions(autograd)
    assert [n for n in ours if n in theirs] == theirs, "the autograd twin's names, in its order"
    assert [n for n in _functions(manual) if n in ours] == ours, "in the manual twin's order"
    for name in ours:  # each also in the autograd twin's namespace (charmlp's imports `indices`)
        a = inspect.signature(getattr(tape, name)).parameters
        b = inspect.signature(getattr(autograd, name)).parameters
        assert list(a) == list(b), f"{family}.{name}: {list(a)} vs {list(b)}"
        assert [p.default for p in a.values()] == [p.default for p in b.values()], f"{family}.{name} defaults"
    assert model.tape is not None and model.tape.__name__.startswith(f"gradtwin.tape.{family}")


@pytest.mark.parametrize("name", LAYERED)
def test_tape_twin_taps_the_intermediates_the_autograd_twin_taps(name: str) -> None:
    model = MODELS[name]
    params, data = problems(name, 1)[0]
    with recording() as tapes:
        model.autograd.loss({k: torch.tensor(v, requires_grad=True) for k, v in params.items()},
                            torch.tensor(data.X), torch.tensor(data.Y))  # fmt: skip
    loss = model.tape.loss(leaves(params, True), data.X, data.Y)  # type: ignore[union-attr]
    named = [node.name for node in graph(loss) if node.name is not None]
    assert named == list(reversed(tapes.names()))  # the same names, in backward order


@pytest.mark.parametrize("name", LAYERED)
def test_tape_loss_and_predict_equal_the_manual_twins(name: str) -> None:
    model = MODELS[name]
    tape = model.tape
    assert tape is not None
    for params, data in problems(name, 2):
        hand = float(model.manual.loss(params, data.X, data.Y))
        assert float(tape.loss(leaves(params), data.X, data.Y).item()) == pytest.approx(hand, rel=1e-12)
        predicted = tape.predict(leaves(params), data.X)
        assert predicted.dtype == np.int64
        np.testing.assert_array_equal(predicted, model.manual.predict(params, data.X))


# ---- parity with autograd, finite differences the referee -----------------------------------------------

COUNTS = {"cnn": 2, "charmlp": 3, "transformer": 1}  # the transformer's check takes seconds a point


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LAYERED)
def test_tape_gradients_equal_autograd_with_finite_differences_as_referee(name: str, dtype: str) -> None:
    model = MODELS[name]
    assert model.tape is not None
    for params, data in problems(name, COUNTS[name]):
        report = check_gradients(model.tape.gradients, model.autograd.loss, params, (data.X, data.Y), dtype=dtype)
        assert report.ok, report.table()
        assert [p.name for p in report.params] == list(params)


def test_the_cnn_tape_twin_drops_what_the_pool_does_not_tile_as_the_manual_twin() -> None:
    """5x5 images: the convolution keeps 5x5, the pool reads the top-left 4x4 and the rest gets no gradient."""
    model, rng = MODELS["cnn"], np.random.default_rng(4)
    done = 0
    while done < 2:
        params, data = random_problem(model, rng)
        if data.X.shape[1] != 25:
            continue
        A, _, P, _, _ = tape_cnn.forward(leaves(params), data.X)
        assert A.shape[2:] == (5, 5) and P.shape[2:] == (2, 2)
        ours, hand = tape_cnn.gradients(params, data.X, data.Y), model.manual.gradients(params, data.X, data.Y)
        for k in params:
            np.testing.assert_allclose(ours[k], hand[k], rtol=1e-12, atol=1e-13 * np.max(np.abs(hand[k])), err_msg=k)
        done += 1


def test_tied_pool_windows_send_the_gradient_to_the_first_maximum_as_max_pool2d() -> None:
    """K = 0 and c > 0: every pixel of A is c, so every window is a 4-way tie; dL/dK then depends on which
    pixel of each window the pool picks (its image patch), and the tape's must be F.max_pool2d's."""
    model = cnn(channels=2)
    rng = np.random.default_rng(0)
    X, Y = rng.random((3, 16)), np.array([0, 1, 1])
    params = {"K": np.zeros((2, 1, 3, 3)), "c": np.array([0.5, 1.5]), "W": rng.standard_normal((8, 2)),
              "b": np.zeros(2)}  # fmt: skip
    ours = tape_cnn.gradients(params, X, Y)
    theirs = model.autograd.gradients({k: torch.tensor(v) for k, v in params.items()}, torch.tensor(X),
                                      torch.tensor(Y))  # fmt: skip
    for k in params:
        np.testing.assert_allclose(ours[k], theirs[k].numpy(), rtol=1e-13, atol=1e-15, err_msg=k)
    assert np.all(ours["K"] != 0.0)  # every offset's patch reached dL/dK (the planted-bug test below moves it)


def test_the_tape_cnn_differentiates_its_images_too_as_autograd() -> None:
    """X as a tensor that requires grad: dL/dX runs back through the convolution's slices and the zero padding."""
    model = MODELS["cnn"]
    for params, data in problems("cnn", 2):
        X = Tensor(data.X, requires_grad=True)
        tape_cnn.loss(leaves(params), X, data.Y).backward()
        Xt = torch.tensor(data.X, requires_grad=True)
        model.autograd.loss({k: torch.tensor(v) for k, v in params.items()}, Xt, torch.tensor(data.Y)).backward()
        assert X.grad is not None and Xt.grad is not None
        want = Xt.grad.numpy()
        np.testing.assert_allclose(X.grad, want, rtol=1e-11, atol=1e-13 * np.max(np.abs(want)))


# ---- the named steps: explain --engine tape ----------------------------------------------------------------


@pytest.mark.parametrize("name", LAYERED)
def test_explain_with_the_tape_engine_finds_every_step_equal_to_autograd(name: str) -> None:
    """`gradtwin explain --model NAME --engine tape`: every step the hand backward names, read off the tape."""
    tape = explain(name, engine="tape")
    assert tape.ok, tape.table()
    params, data = problems(name, 1)[0]
    assert [s.name for s in tape.steps] == list(MODELS[name].manual.backward(params, data.X, data.Y))
    ops_seen = {node.op for node in tape.graph}
    assert {"cnn": {"index", "max"}, "charmlp": {"take", "tanh"}, "transformer": {"where", "logsumexp"}}[
        name
    ] <= ops_seen


# ---- training histories ---------------------------------------------------------------------------------

SMALL: dict[str, Callable[[], tuple[Model, Dataset, float]]] = {
    "cnn": lambda: (cnn(channels=4), cnn().synthetic(24, 0), MODELS["cnn"].default_lr),
    "charmlp": lambda: (charmlp(context=2, embed=2, hidden=4), synthetic_names(16, context=2, seed=0), 2.0),
    "transformer": lambda: (transformer(context=3, width=4), transformer(context=3).synthetic(4, 0), 1.0),
}
# the drift bound derives its rounding scales from torch Jacobians over every tapped intermediate at every step
# (0.5 to 1 s a step for the two models with embeddings, on one core): those two run in float32, the cnn in both
HISTORIES = [("cnn", "float64"), ("cnn", "float32"), ("charmlp", "float32"), ("transformer", "float32")]


@pytest.mark.parametrize(("name", "dtype"), HISTORIES)
def test_a_20_step_tape_history_stays_within_the_drift_bound_of_the_manual_one(name: str, dtype: str) -> None:
    """20 full-batch steps of each engine through the one training loop, from the same start: every parameter
    of the tape run within the drift bound of the manual run at every step, and the loss falls."""
    model, data, lr = SMALL[name]()
    steps = 20
    manual, ours = (train(make_engine(e, model, dtype), data, lr, steps, seed=0) for e in ("manual", "tape"))
    assert ours.history.iteration.tolist() == list(range(steps + 1)) and ours.stop_reason == "iterations"
    bound = drift_tolerance(model, manual.history.params, data.X, data.Y, np.dtype(dtype), lr, [None] * steps)
    for k, hand in manual.history.params.items():
        assert np.array_equal(ours.history.params[k][0], hand[0]), f"{k}: not the same start"
        gap = np.abs(ours.history.params[k] - hand).reshape(steps + 1, -1).max(axis=1)  # (steps + 1,)
        assert np.all(gap <= bound), f"{k}: tape - manual {gap} beyond the bound {bound}"
    assert ours.history.loss[-1] < 0.9 * ours.history.loss[0]


# ---- the new ops against torch float64 ------------------------------------------------------------------


def _exactly(ours: Callable[[Tensor], Tensor], theirs: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray) -> None:
    """Engine vs torch: the same value, then the same gradient under a random upstream gradient, bit for bit
    (the ops copy values forward and gradients back: nothing is rounded)."""
    leaf, t = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, ref = ours(leaf), theirs(t)
    np.testing.assert_array_equal(out.data, ref.detach().numpy(), err_msg="forward")
    G = np.random.default_rng(x.size).standard_normal(ref.shape).astype(x.dtype)  # (out's shape)
    out.backward(G)
    ref.backward(torch.tensor(G))
    assert leaf.grad is not None and leaf.grad.dtype == x.dtype
    np.testing.assert_array_equal(leaf.grad, t.grad.numpy(), err_msg="gradient")


def _torch_pad(widths: Sequence[tuple[int, int]]) -> Callable[[torch.Tensor], torch.Tensor]:
    flat = tuple(k for pair in reversed(widths) for k in pair)  # F.pad: the last axis first
    return lambda t: F.pad(t, flat)


@pytest.mark.parametrize(
    "widths", [((0, 0), (0, 0), (1, 1), (1, 1)), ((1, 0), (0, 2), (3, 1), (0, 0)), ((0, 0), (0, 0), (0, 0), (0, 0))]
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pad_equals_torch_pad_in_value_and_gradient(widths: tuple[tuple[int, int], ...], dtype: str) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(dtype)
    _exactly(lambda a: ops.pad(a, widths), _torch_pad(widths), x)


def _ties() -> np.ndarray:
    """A (3, 4, 5) array with ties along every axis: few distinct values."""
    return np.random.default_rng(1).integers(0, 3, size=(3, 4, 5)).astype(np.float64)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_max_sends_the_whole_gradient_to_the_first_maximum_as_torch_max_dim(axis: int, keepdims: bool) -> None:
    x = _ties()
    assert np.any(np.sum(x == x.max(axis=axis, keepdims=True), axis=axis) > 1)  # ties are there
    _exactly(lambda a: ops.max(a, axis=axis, keepdims=keepdims),
             lambda t: torch.max(t, dim=axis, keepdim=keepdims).values, x)  # fmt: skip
    R = np.random.default_rng(2).uniform(1.0, 2.0, np.max(x, axis=axis).shape)  # a random upstream gradient
    split = Tensor(x, requires_grad=True)  # amax splits instead, as torch.amax
    ops.amax(split, axis=axis).backward(R)
    one = Tensor(x, requires_grad=True)
    ops.max(one, axis=axis).backward(R)
    assert one.grad is not None and split.grad is not None
    assert np.all(np.count_nonzero(one.grad, axis=axis) == 1)  # one element of each slice takes it all
    assert not np.array_equal(one.grad, split.grad)


@settings(max_examples=40)
@given(shape=array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4), data=st.data())
def test_max_and_pad_agree_with_torch_at_drawn_shapes_axes_and_ties(shape: tuple[int, ...], data: Any) -> None:
    x = np.random.default_rng(len(shape)).integers(0, 3, size=shape).astype(np.float64)  # few values: ties
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    _exactly(lambda a: ops.max(a, axis=axis, keepdims=keepdims),
             lambda t: torch.max(t, dim=axis, keepdim=keepdims).values, x)  # fmt: skip
    widths = tuple(data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2)), label="widths") for _ in shape)
    _exactly(lambda a: ops.pad(a, widths), _torch_pad(widths), x)


def test_max_keeps_float32_and_a_nan_wins_as_in_torch() -> None:
    x = np.array([[1.0, np.nan, 3.0, np.nan], [2.0, 2.0, 0.0, 1.0]], dtype=np.float32)
    _exactly(lambda a: ops.max(a, axis=1), lambda t: torch.max(t, dim=1).values, x)


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda: ops.max(np.ones((2, 3)), axis=(0, 1)), "max: axis must be one int (amax takes several); got (0, 1)"),
        (lambda: ops.max(np.ones((2, 3)), axis=2), "max: axis must be None or ints in [-2, 1]; got 2"),
        (lambda: ops.max(np.ones((2, 0)), axis=1), "max: axis 1 must hold at least one element; got shape (2, 0)"),
        (lambda: ops.pad(np.ones((2, 3)), ((1, 1),)), "pad: widths must be one (before, after) pair of ints >= 0"),
        (lambda: ops.pad(np.ones((2, 3)), ((1, 1), (0, -1))), "pad: widths must be one (before, after) pair"),
        (lambda: ops.pad(np.ones((2, 3)), 1), "pad: widths must be one (before, after) pair"),
    ],
)
def test_bad_input_to_the_new_ops_gets_one_clear_line(call: Callable[[], Any], says: str) -> None:
    with pytest.raises((UsageError, TypeError)) as info:
        call()
    assert str(info.value).startswith(says) and "\n" not in str(info.value)


# ---- planted bugs in the new ops --------------------------------------------------------------------------


def planted(fn: Callable[..., Any], old: str, new: str) -> Callable[..., Any]:
    """A copy of engine function `fn` with `old` (which must occur once) replaced by `new` in its source."""
    source = textwrap.dedent(inspect.getsource(fn))
    assert source.count(old) == 1, f"{old!r} occurs {source.count(old)} times in {fn.__qualname__}"
    namespace = dict(fn.__globals__)
    exec(compile(source.replace(old, new), fn.__code__.co_filename, "exec"), namespace)
    return namespace[fn.__name__]


def test_a_max_that_routes_to_the_last_tie_is_caught_by_the_op_test_and_in_the_cnn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    last = "a.shape[ax] - 1 - np.argmax(np.flip(a.data, axis=ax), axis=ax)"  # the LAST maximum
    wrong = planted(ops.max, "np.argmax(a.data, axis=ax)", last)
    x = _ties()
    monkeypatch.setattr(ops, "max", wrong)  # what the cnn tape twin's pool calls
    with pytest.raises(AssertionError, match="gradient"):
        _exactly(lambda a: ops.max(a, axis=1), lambda t: torch.max(t, dim=1).values, x)
    with pytest.raises(AssertionError, match="K"):
        test_tied_pool_windows_send_the_gradient_to_the_first_maximum_as_max_pool2d()


def test_a_pad_whose_gradient_keeps_the_wrong_window_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = planted(ops.pad, "slice(before, before + n)", "slice(0, n)")  # forgets the leading border
    monkeypatch.setattr(ops, "pad", wrong)
    widths = ((0, 0), (0, 0), (1, 1), (1, 1))
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    with pytest.raises(AssertionError, match="gradient"):
        _exactly(lambda a: ops.pad(a, widths), _torch_pad(widths), x)


def test_a_tape_batch_norm_with_the_unbiased_variance_is_caught() -> None:
    """The checker can fail a tape twin: charmlp's batch norm with n - 1 (a copy of the twin's source, edited)."""
    old = "var = (Zc * Zc).mean(axis=0)  # (h,)  biased: 1/n"
    source = inspect.getsource(tape_charmlp)
    assert source.count(old) == 1
    copy = types.ModuleType(f"{tape_charmlp.__name__}_planted")
    exec(compile(source.replace(old, "var = (Zc * Zc).sum(axis=0) / (Z1.shape[0] - 1)"), copy.__name__, "exec"),
         copy.__dict__)  # fmt: skip
    model = MODELS["charmlp"]
    params, data = problems("charmlp", 1)[0]
    report = check_gradients(copy.gradients, model.autograd.loss, params, (data.X, data.Y))
    assert not report.ok and "W1" in {p.name for p in report.params if not p.ok}
