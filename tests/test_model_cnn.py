"""The cnn model: conv2d, relu, max-pool, linear, softmax, its hand backward composed from the layers' twins.

Held to autograd by the checker (every parameter and every named step, float64 and float32, finite
differences in float64 as referee) at random problems; its classic model-level mistakes, each planted
as a one-line edit of a copy of the manual twin, are caught and pinned to their step; both twins train
through the one loop within the drift bound; a bad image width is one clear error.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import DTYPES
from gradtwin.autograd import cnn as auto_cnn
from gradtwin.data import Dataset
from gradtwin.errors import DataError
from gradtwin.manual import cnn as hand_cnn
from gradtwin.manual.softmax import softmax
from gradtwin.models import MODELS, cnn
from gradtwin.parity.drift import drift_tolerance
from gradtwin.parity.gradcheck import GradientReport, check_gradients
from gradtwin.parity.model_check import check_point, random_problem
from gradtwin.steps.explain import explain
from gradtwin.training import make_engine, train

STEPS = ["Z", "F", "P", "H", "A"]  # the named intermediates, from the loss back
PARAMS = ["K", "c", "W", "b"]
Params = dict[str, np.ndarray]


def unsaturated(params: Params, data: Dataset) -> bool:
    """No row's own class has probability above 0.99.

    Where softmax(Z)_{i,Y_i} rounds near 1, dL/dZ = (P - onehot) / n cancels to ~1 - P and keeps the
    absolute rounding u * |lse_i| of the log-sum-exp, which the checker's derived scale (the sensitivity
    to the inputs and the tapped tensors; lse is neither) does not see: hand and autograd then differ by
    about u / n while the tolerance is gamma * (1 - P). Points like that test the checker, not the twins.
    """
    Z = hand_cnn.forward(params, data.X)[4]  # (n, k)
    return bool(np.all(softmax(Z)[np.arange(data.n), data.Y] < 0.99))


@functools.cache
def problems(channels: int, count: int, seed: int) -> list[tuple[Params, Dataset]]:
    """`count` random problems of `model_check.random_problem` (admissible: no kink within reach) for
    cnn(channels), images of 4x4 or 5x5 pixels, parameters at scales 1e-2..1e2, softmax unsaturated."""
    model, rng = cnn(channels=channels), np.random.default_rng(seed)
    out: list[tuple[Params, Dataset]] = []
    while len(out) < count:
        params, data = random_problem(model, rng)
        if unsaturated(params, data):
            out.append((params, data))
    return out


def check(manual: Any, params: Params, data: Dataset, dtype: str = "float64") -> GradientReport:
    """The checker on `manual.backward`: the parameters and every intermediate it names (report.steps)."""
    return check_gradients(
        manual.backward, auto_cnn.loss, params, (data.X, data.Y), dtype=dtype, manual_loss=manual.loss
    )


# ---- the twin contract and the forward pass ---------------------------------------------------


def test_twins_define_the_same_names_in_the_same_order_with_the_same_signatures() -> None:
    def functions(m: types.ModuleType) -> list[str]:
        return [n for n, v in vars(m).items() if inspect.isfunction(v) and v.__module__ == m.__name__]

    shared = functions(auto_cnn)
    assert shared[:3] == ["forward", "predict", "loss"] and "backward" in functions(hand_cnn)
    assert [n for n in functions(hand_cnn) if n in shared] == shared
    for name in shared:
        a = list(inspect.signature(getattr(hand_cnn, name)).parameters)
        assert a == list(inspect.signature(getattr(auto_cnn, name)).parameters), name


def _reference_logits(params: Params, X: np.ndarray) -> torch.Tensor:
    """The network written out in torch's own functions, apart from either twin."""
    t = {k: torch.tensor(v) for k, v in params.items()}
    s = round(X.shape[1] ** 0.5)
    img = torch.tensor(X).reshape(-1, 1, s, s)
    A = F.conv2d(img, t["K"], t["c"], padding=t["K"].shape[2] // 2)
    P = F.max_pool2d(F.relu(A), 2)
    return torch.flatten(P, 1) @ t["W"] + t["b"]


@pytest.mark.parametrize("channels", [1, 2, 8])
def test_forward_predict_and_loss_equal_torch_in_numpy_and_torch(channels: int) -> None:
    for params, data in problems(channels, 2, seed=1):
        want = _reference_logits(params, data.X)  # (n, k)
        t = {k: torch.tensor(v) for k, v in params.items()}
        X, Y = torch.tensor(data.X), torch.tensor(data.Y)
        np.testing.assert_allclose(hand_cnn.forward(params, data.X)[4], want.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(hand_cnn.forward(t, X)[4].numpy(), want.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(auto_cnn.forward(t, X)[4].numpy(), want.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(hand_cnn.predict(params, data.X), torch.argmax(want, 1).numpy())
        assert hand_cnn.predict(params, data.X).dtype == np.int64
        expected = float(F.cross_entropy(want, Y))
        assert float(hand_cnn.loss(params, data.X, data.Y)) == pytest.approx(expected, rel=1e-12)
        assert float(auto_cnn.loss(t, X, Y)) == pytest.approx(expected, rel=1e-12)


def test_the_manual_backward_runs_on_torch_tensors_without_autograd_and_equals_numpy() -> None:
    params, data = problems(2, 1, seed=2)[0]
    t = {k: torch.tensor(v) for k, v in params.items()}
    with torch.no_grad():
        on_torch = hand_cnn.backward(t, torch.tensor(data.X), torch.tensor(data.Y))
    on_numpy = hand_cnn.backward(params, data.X, data.Y)
    assert list(on_numpy) == [*STEPS, "W", "b", "K", "c"]
    for name, value in on_numpy.items():
        assert isinstance(on_torch[name], torch.Tensor) and on_torch[name].dtype == torch.float64
        np.testing.assert_allclose(on_torch[name].numpy(), value, rtol=1e-12, atol=1e-15, err_msg=name)


# ---- parity: every parameter and every named step ---------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [1, 2, 8])
def test_hand_gradients_and_every_step_equal_autograd_at_random_problems(channels: int, dtype: str) -> None:
    for params, data in problems(channels, 4, seed=channels):
        report = check(hand_cnn, params, data, dtype)
        assert report.ok, report.table()
        assert [p.name for p in report.params] == PARAMS
        assert report.steps is not None and [s.name for s in report.steps.steps] == STEPS, report.steps


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_registered_model_passes_the_models_check(dtype: str) -> None:
    """`check --model cnn`'s path (model_check.check_point, scales derived from autograd), channels 8."""
    model = MODELS["cnn"]
    rng = np.random.default_rng(3)
    done = 0
    while done < 3:
        params, data = random_problem(model, rng)
        if not unsaturated(params, data):
            continue
        failed = [c.message() for c in check_point(model, params, data, dtype) if not c.ok]
        assert not failed, "\n".join(failed)
        done += 1


def test_explain_parses_every_step_and_finds_them_all_equal_on_the_digits() -> None:
    e = explain("cnn")
    assert e.ok, e.table()
    assert [s.name for s in e.steps] == [*STEPS, "W", "b", "K", "c"]
    assert e.parents == {"Z": None, "F": "Z", "P": "F", "H": "P", "A": "H", "W": "Z", "b": "Z", "K": "A", "c": "A"}


# ---- planted bugs -----------------------------------------------------------------------------


def planted(line: str, bug: str) -> types.ModuleType:
    """A copy of the manual twin with one line of its backward replaced by the bug (the twin is untouched)."""
    source = inspect.getsource(hand_cnn)
    assert inspect.getsource(hand_cnn.backward).count(line) == 1 and source.count(line) == 1, line
    copy = types.ModuleType(f"{hand_cnn.__name__}_planted")
    exec(compile(source.replace(line, bug), copy.__name__, "exec"), copy.__dict__)
    return copy


BUGS = {
    "relu gradient without its mask": (
        "dA = dH * xp.astype(A > 0, A.dtype)",
        "dA = dH",
        "dL/dH agrees; dL/dA does not: the mistake is in the step from H to A",
    ),
    "pool gradient spread evenly over each window": (
        'dH = maxpool2d.backward({}, H, dP, POOL, POOL)["X"]',
        "dH = xp.repeat(xp.repeat(dP, POOL, axis=2), POOL, axis=3) / POOL**2",
        "dL/dP agrees; dL/dH does not: the mistake is in the step from P to H",
    ),
    "flatten undone in channels-last order": (
        "dP = xp.reshape(dF, P.shape)",
        "dP = xp.permute_dims(xp.reshape(dF, (P.shape[0], P.shape[2], P.shape[3], P.shape[1])), (0, 3, 1, 2))",
        "dL/dF agrees; dL/dP does not: the mistake is in the step from F to P",
    ),
    "softmax head without the 1/n": (
        "dZ = cross_entropy_gradient(Z, Y)",
        "dZ = cross_entropy_gradient(Z, Y) * Z.shape[0]",
        "dL/dZ does not agree: the mistake is in the step from the loss to Z",
    ),
}


@functools.cache
def bug_problem() -> tuple[Params, Dataset]:
    """4x4 images (the conv keeps 4x4, the pool tiles it exactly), 2 channels, 5 rows, 3 classes."""
    model, rng = cnn(channels=2), np.random.default_rng(11)
    while True:
        X = rng.random((5, 16))  # (5, 16)
        data = Dataset(X, np.array([0, 1, 2, 1, 0]), name="bug images", y_name="class")
        params = {k: rng.standard_normal(s) for k, s in model.param_shapes(data).items()}
        A = hand_cnn.forward(params, X)[0]  # (5, 2, 4, 4)
        if model.admissible is not None and model.admissible(params, data) and unsaturated(params, data):
            # a window whose maximum is a negative A (relu's mask matters) and one with several positives
            if np.any(np.max(A.reshape(5, 2, 2, 2, 2, 2), axis=(3, 5)) < 0) and np.sum(A > 0) > 20:
                return params, data


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bug", list(BUGS))
def test_a_planted_model_level_bug_is_caught_and_pinned_to_its_step(bug: str, dtype: str) -> None:
    line, wrong, sentence = BUGS[bug]
    params, data = bug_problem()
    assert check(hand_cnn, params, data, dtype).ok  # the real twin passes at this very point
    report = check(planted(line, wrong), params, data, dtype)
    assert not report.ok
    assert report.steps is not None and report.steps.first_wrong == sentence, report.steps
    conv_params_wrong = {p.name for p in report.params if not p.ok} >= {"K", "c"}
    assert conv_params_wrong, report.table()  # every bug reaches the convolution's parameters
    if bug != "softmax head without the 1/n":
        assert all(p.ok for p in report.params if p.name in ("W", "b")), report.table()  # the head is right
    hand_fd = [
        c for p in report.params if p.name == "K" for c in p.checks if "hand float64 vs finite diff" in c.comparison
    ]
    assert hand_fd and not hand_fd[0].ok  # the float64 referee, not only autograd, says the hand side is wrong


def test_explain_pins_a_planted_bug_on_the_digits() -> None:
    line, wrong, sentence = BUGS["relu gradient without its mask"]
    model = dataclasses.replace(MODELS["cnn"], manual=planted(line, wrong))
    e = explain(model)
    assert not e.ok and e.first_wrong == sentence, e.table()


# ---- training through the one loop ------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_both_twins_train_within_the_drift_bound_and_the_loss_falls(dtype: str) -> None:
    model = cnn(channels=4)
    data = model.synthetic(32, 0)  # 6x6 bars, 24 training rows
    lr, iterations = model.default_lr, 20
    engines = [make_engine("manual", model, dtype), make_engine("manual", model, dtype, array="torch")]
    engines.append(make_engine("autograd", model, dtype))  # the manual twin on NumPy, on torch tensors; autograd
    runs = [train(engine, data, lr, iterations, seed=0) for engine in engines]
    manual, on_torch, autograd = (r.history for r in runs)
    assert np.array_equal(manual.iteration, np.arange(iterations + 1))
    bound = drift_tolerance(model, manual.params, data.X, data.Y, np.dtype(dtype), lr, [None] * iterations)
    for other in (on_torch, autograd):
        for name in PARAMS:
            gap = np.abs(manual.params[name] - other.params[name]).reshape(iterations + 1, -1).max(axis=1)
            assert np.all(gap <= bound), f"{name}: {gap} beyond {bound}"
    assert manual.loss[-1] < 0.5 * manual.loss[0] and runs[0].stop_reason == "iterations"
    engine = make_engine("manual", model, dtype)
    held_out = engine.to_numpy(engine.predict(engine.params(runs[0].params), engine.asarray(data.test.X)))
    assert np.mean(held_out == data.test.Y) > 0.5  # three classes: chance is 1/3


# ---- the registry and bad input ---------------------------------------------------------------


def test_the_registry_entry_reads_its_sizes_from_the_data() -> None:
    model = MODELS["cnn"]
    assert model.family == "cnn" and model.task == "classification" and model.options == {"channels": 8, "kernel": 3}
    digits = model.default_data(True)
    assert digits.test is not None and digits.X.shape[1] == 64 and not digits.standardized
    assert model.param_shapes(digits) == {"K": (8, 1, 3, 3), "c": (8,), "W": (128, 10), "b": (10,)}
    assert model.param_shapes(model.synthetic(40, 1)) == {"K": (8, 1, 3, 3), "c": (8,), "W": (72, 3), "b": (3,)}
    assert cnn(channels=3, kernel=5).param_shapes(digits) == {"K": (3, 1, 5, 5), "c": (3,), "W": (48, 10), "b": (10,)}
    rng = np.random.default_rng(0)
    for _ in range(20):
        data = model.random_data(rng)
        assert data.n <= 6 and data.X.shape[1] in (16, 25) and int(data.Y.max()) + 1 in (2, 3)
        assert sum(int(np.prod(s)) for s in model.param_shapes(data).values()) <= 200


def _rows_of(width: int) -> Dataset:
    return Dataset(np.random.default_rng(0).random((4, width)), np.array([0, 1, 0, 1]), name="odd", y_name="class")


@pytest.mark.parametrize("twin", [hand_cnn, auto_cnn], ids=["manual", "autograd"])
def test_a_width_that_is_not_a_square_is_one_error_naming_it(twin: types.ModuleType) -> None:
    model = MODELS["cnn"]
    data = _rows_of(15)
    with pytest.raises(DataError, match=r"^odd: cnn needs X of width s\*s, each row a square image .*; got width 15$"):
        model.param_shapes(data)
    with pytest.raises(DataError, match="got width 15"):
        train(make_engine("manual", model), data, 0.5, 2)
    params: dict[str, Any] = {k: np.zeros(s) for k, s in model.param_shapes(_rows_of(16)).items()}
    X: Any = data.X
    Y: Any = data.Y
    if twin is auto_cnn:
        params, X, Y = {k: torch.tensor(v) for k, v in params.items()}, torch.tensor(X), torch.tensor(Y)
    with pytest.raises(ValueError, match=r"^cnn: X must be 2-D \(n, s\*s\), each row a square image .*; got width 15$"):
        twin.loss(params, X, Y)


def test_images_too_small_for_the_pool_are_refused() -> None:
    data = Dataset(np.ones((2, 1)), np.array([0, 1]), name="dots", y_name="class")
    with pytest.raises(DataError, match=r"^dots: cnn needs images .* at least 2x2 pixels .*; got images of 1x1$"):
        MODELS["cnn"].param_shapes(data)
