"""The charmlp model: the makemore MLP over characters, its hand backward pass composed from the layer twins.

Both twins are held to each other and to float64 finite differences by `check_gradients` (the model's
real loss, tolerances derived from autograd), every named step too, at random problems in float64 and
float32; the classic mistakes of this model, planted in a copy of the manual twin or of a layer it
composes, are caught at the right tensor; both twins train through the one loop with histories within a
derived drift bound; bad windows give one clear error; the sampler draws names from the trained model.
"""

from __future__ import annotations

import inspect
import itertools
import math
import types
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import DTYPES
from gradtwin.autograd import charmlp as autograd_charmlp
from gradtwin.data import Dataset
from gradtwin.data.names import ALPHABET, synthetic_names
from gradtwin.errors import DataError, UsageError
from gradtwin.layers.manual import batchnorm, embedding
from gradtwin.manual import charmlp as manual_charmlp
from gradtwin.models import MODELS, Model, charmlp
from gradtwin.parity.drift import step_tolerance
from gradtwin.parity.gradcheck import check_gradients
from gradtwin.sampling import sample_names
from gradtwin.training import make_engine, train

MODEL = MODELS["charmlp"]
PARAMS = ("C", "W1", "gamma", "beta", "W2", "b2")
STEPS = ["Z2", "H", "Zbn", "Z1", "Ecat", "Emb"]  # from the loss back
SEEDS = range(4)


def problem(seed: int) -> tuple[dict[str, np.ndarray], Dataset]:
    """A random problem of `check` (the model's random_data, redrawn until admissible) at moderate parameters.

    Parameters ~ N(0, 1) times a scale in [0.3, 2], gamma of either sign: tanh and softmax stay away from
    saturation, where the tolerance autograd derives does not see the rounding of 1 - H^2 or of P - 1.
    """
    rng = np.random.default_rng(seed)
    while True:
        data = MODEL.random_data(rng)
        shapes = MODEL.param_shapes(data)
        scale = 10.0 ** rng.uniform(-0.5, 0.3)
        params = {k: scale * rng.standard_normal(s) for k, s in shapes.items()}
        params["gamma"] = rng.uniform(0.5, 2.0, shapes["gamma"]) * rng.choice([-1.0, 1.0], shapes["gamma"])
        assert MODEL.admissible is not None
        if MODEL.admissible(params, data):
            return params, data


def gradient_check(twin: Any, params: dict[str, np.ndarray], data: Dataset, dtype: str = "float64", **kw: Any) -> Any:
    """`check_gradients` of the twin's backward (parameters and named steps) against the autograd twin's loss."""
    return check_gradients(
        twin.backward, MODEL.autograd.loss, params, (data.X, data.Y), dtype=dtype, manual_loss=twin.loss, **kw
    )


def planted(
    module: types.ModuleType, *edits: tuple[str, str, int], layer: types.ModuleType | None = None
) -> types.ModuleType:
    """A copy of `layer`'s module (default: the charmlp twin) whose `backward` has each (old, new, count) edit;
    for a layer, a copy of the charmlp twin that composes the planted layer. The twins are never touched."""
    target = layer or module

    def copy_of(m: types.ModuleType, source: str | None) -> types.ModuleType:
        out = types.ModuleType(f"{m.__name__}_planted")
        exec(compile(inspect.getsource(m), m.__file__ or "<twin>", "exec"), out.__dict__)
        if source is not None:
            exec(compile(source, m.__file__ or "<twin>", "exec"), out.__dict__)
        return out

    source = inspect.getsource(target.backward)
    for old, new, count in edits:
        assert source.count(old) == count, f"{old!r} occurs {source.count(old)} times in {target.__name__}.backward"
        source = source.replace(old, new)
    if layer is None:
        return copy_of(module, source)
    twin = copy_of(module, None)
    setattr(twin, layer.__name__.rsplit(".", 1)[1], copy_of(layer, source))
    return twin


def failing(report: Any) -> tuple[set[str], set[str]]:
    """(parameters, steps) the report finds wrong."""
    steps = set() if report.steps is None else {s.name for s in report.steps.steps if not s.ok}
    return {p.name for p in report.params if not p.ok}, steps


# ---- the twin contract and the registry ---------------------------------------------------------


def test_twins_define_the_same_names_in_the_same_order_with_the_same_signatures() -> None:
    def functions(m: types.ModuleType) -> list[str]:
        return [n for n, v in vars(m).items() if inspect.isfunction(v) and v.__module__ == m.__name__]

    shared = functions(autograd_charmlp)
    assert shared == ["indices", "forward", "predict", "loss", "gradients", "statistics"]
    assert [n for n in functions(manual_charmlp) if n in shared] == shared
    for name in shared:
        a = inspect.signature(getattr(manual_charmlp, name)).parameters
        b = inspect.signature(getattr(autograd_charmlp, name)).parameters
        assert list(a) == list(b), name
    assert list(inspect.signature(manual_charmlp.backward).parameters) == ["params", "X", "Y"]


def test_the_registry_entry() -> None:
    assert MODEL.family == "charmlp" and MODEL.task == "classification" and MODEL.x_ndim == 2
    assert MODEL.options == {"context": 3, "embed": 10, "hidden": 64}
    assert not MODEL.rows_independent and MODEL.scales == "autograd" and MODEL.first_layer is None
    data = synthetic_names(40, context=3)
    assert MODEL.param_shapes(data) == {
        "C": (27, 10), "W1": (30, 64), "gamma": (64,), "beta": (64,), "W2": (64, 27), "b2": (27,)
    }  # fmt: skip
    params = MODEL.init_params(data, seed=0)
    assert np.all(params["gamma"] == 1) and np.all(params["beta"] == 0) and np.all(params["b2"] == 0)
    # a small W2 starts every logit near 0: the first loss is near log V, the loss of a uniform guess
    assert abs(float(MODEL.manual.loss(params, data.X, data.Y)) - math.log(27)) < 0.05


@pytest.mark.parametrize("seed", range(20))
def test_random_problems_are_tiny_and_have_at_least_two_rows(seed: int) -> None:
    data = MODEL.random_data(np.random.default_rng(seed))
    shapes = MODEL.param_shapes(data)
    assert 2 <= data.n <= 8 and data.X.shape[1] == 2 and shapes["C"][0] <= 5
    assert sum(math.prod(s) for s in shapes.values()) <= 100
    assert np.all(data.X == np.round(data.X)) and data.X.max() < shapes["C"][0]


def test_admissible_refuses_a_position_with_one_character_in_every_row() -> None:
    params, data = problem(0)
    assert MODEL.admissible is not None and MODEL.admissible(params, data)
    X = data.X.copy()
    X[:, 1] = 1.0
    assert not MODEL.admissible(params, Dataset(X, data.Y, "random windows", class_names=data.class_names))


def test_forward_is_embedding_batch_norm_tanh_and_a_linear_output() -> None:
    params, data = problem(1)
    p = {k: torch.tensor(v) for k, v in params.items()}
    Xi = torch.tensor(data.X).long()
    Z1 = p["C"][Xi].reshape(data.n, -1) @ p["W1"]
    Z1hat = (Z1 - Z1.mean(0)) / torch.sqrt(Z1.var(0, unbiased=False) + 1e-5)
    Z2 = torch.tanh(p["gamma"] * Z1hat + p["beta"]) @ p["W2"] + p["b2"]
    expected = F.cross_entropy(Z2, torch.tensor(data.Y))
    assert float(MODEL.manual.loss(params, data.X, data.Y)) == pytest.approx(float(expected), rel=1e-12)
    assert MODEL.manual.predict(params, data.X).tolist() == torch.argmax(Z2, 1).tolist()


# ---- parity: every parameter and every named step -------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_gradients_and_every_step_agree_with_autograd_and_finite_differences(seed: int, dtype: str) -> None:
    params, data = problem(seed)
    report = gradient_check(MODEL.manual, params, data, dtype)
    assert report.ok, report.table()
    assert report.steps is not None and report.steps.ok, report.table()
    assert [s.name for s in report.steps.steps] == STEPS
    assert {p.name for p in report.params} == set(PARAMS)


def test_the_manual_twin_runs_on_torch_tensors(device: str) -> None:
    """The same array-API source on torch tensors without autograd (the manual engine off NumPy)."""
    params, data = problem(2)
    report = gradient_check(MODEL.manual, params, data, "float32", device=device, manual_array="torch")
    assert report.ok, report.table()


# ---- planted bugs -------------------------------------------------------------------------------


def test_the_embedding_gradient_assigned_instead_of_accumulated_is_caught() -> None:
    """dW[idx] = rows keeps one upstream gradient per character; repeated characters lose the rest."""
    params, data = problem(0)
    assert len(np.unique(data.X)) < data.X.size, "the problem must repeat a character"
    bug = planted(manual_charmlp, ("_add_at(dW, idx, rows)", "dW[idx] = rows", 1), layer=embedding)
    assert gradient_check(MODEL.manual, params, data).ok
    report = gradient_check(bug, params, data)
    assert failing(report) == ({"C"}, set()), report.table()


def test_batch_norm_without_the_centring_term_is_caught() -> None:
    params, data = problem(0)
    bug = planted(manual_charmlp, ("dX = dXc + dmu / n", "dX = dXc", 1), layer=batchnorm)
    report = gradient_check(bug, params, data)
    params_wrong, steps_wrong = failing(report)
    assert params_wrong == {"C", "W1"} and steps_wrong == {"Z1", "Ecat", "Emb"}, report.table()
    assert report.steps is not None and "Zbn" in str(report.steps.first_wrong), report.table()


def test_batch_norm_with_n_minus_1_is_caught() -> None:
    params, data = problem(0)
    bug = planted(manual_charmlp, ("dvar * (2.0 / n)", "dvar * (2.0 / (n - 1))", 1), layer=batchnorm)
    report = gradient_check(bug, params, data)
    params_wrong, steps_wrong = failing(report)
    assert params_wrong == {"C", "W1"} and "Z1" in steps_wrong, report.table()


def test_the_concatenation_gradient_split_in_the_wrong_order_is_caught() -> None:
    """Splitting dL/dEcat feature-major ((n, e, t), then swapping) hands each position another's gradient."""
    params, data = problem(0)
    wrong = "xp.permute_dims(xp.reshape(dEcat, (Emb.shape[0], Emb.shape[2], Emb.shape[1])), (0, 2, 1))"
    bug = planted(manual_charmlp, ("xp.reshape(dEcat, Emb.shape)", wrong, 1))
    report = gradient_check(bug, params, data)
    assert failing(report) == ({"C"}, {"Emb"}), report.table()
    assert report.steps is not None and "Ecat" in str(report.steps.first_wrong), report.table()


# ---- training through the one loop ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_both_twins_train_with_histories_within_the_drift_bound(dtype: str) -> None:
    """Twenty full-batch steps of each twin from one start; the loss falls, on the held-out names too.

    The bound: e_{t+1} <= e_t + delta_t (rho = 1: no amplification of rounding differences, as the drift
    bound assumes for the mlp), delta_t the two implementations' step tolerance (`parity.drift.step_tolerance`,
    scales derived from autograd), taken as its largest 2-norm at rows 0, 10 and 20 of the history, so
    that e_t <= t * max delta. The loss rows differ by at most |grad L| e_t + a second-order term.
    """
    model = charmlp(context=2, embed=3, hidden=8)
    data = synthetic_names(300, context=2, seed=0)
    lr, steps = 2.0, 20
    manual, autograd = (train(make_engine(e, model, dtype), data, lr=lr, iterations=steps, seed=0) for e in
                        ("manual", "autograd"))  # fmt: skip
    assert manual.history.iteration.tolist() == list(range(steps + 1))
    delta = 0.0
    for row in (0, 10, 20):
        p = {k: v[row] for k, v in manual.history.params.items()}
        tol = step_tolerance(model, p, data.X, data.Y, np.dtype(dtype), lr)
        delta = max(delta, float(np.sqrt(sum(np.sum(np.square(t)) for t in tol.values()))))
    bound = np.arange(steps + 1) * delta  # (steps + 1,)
    for name in PARAMS:
        diff = np.abs(manual.history.params[name] - autograd.history.params[name]).reshape(steps + 1, -1)
        assert np.all(diff.max(axis=1) <= bound), f"{name}: worst row {np.argmax(diff.max(axis=1) - bound)}"
    assert np.allclose(manual.history.loss, autograd.history.loss, rtol=0, atol=100 * delta + 1e-12)
    assert manual.history.loss[-1] < 0.8 * manual.history.loss[0]
    assert data.test is not None
    held_out = float(model.manual.loss(manual.params, data.test.X, data.test.Y))
    assert held_out < 0.8 * math.log(27)


# ---- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            lambda X: X[:, :1],
            DataError,
            r"charmlp: X must be 2-D \(n, 2\), context = 2 characters .* got shape \(\d+, 1\)",
        ),
        (lambda X: np.where(X == X[0, 0], 7.0, X), DataError, r"indices in \[0, V\) with V = \d; got 7\.0 at \(0, 0\)"),
        (lambda X: X + 0.5, DataError, "whole-number character indices"),
        (lambda X: X[:1], DataError, r"n >= 2 rows"),
    ],
)
def test_bad_windows_give_one_clear_error_from_both_twins(change: Any, error: type, message: str) -> None:
    params, data = problem(3)
    X = change(data.X)
    Y = data.Y[: X.shape[0]]
    with pytest.raises(error, match=message) as hand:
        MODEL.manual.loss(params, X, Y)
    p = {k: torch.tensor(v) for k, v in params.items()}
    with pytest.raises(error, match=message) as auto:
        MODEL.autograd.loss(p, torch.tensor(X), torch.tensor(Y))
    assert str(hand.value) == str(auto.value) and "\n" not in str(hand.value)


# ---- sampling -----------------------------------------------------------------------------------------


def trained() -> tuple[Model, dict[str, np.ndarray], Dataset]:
    model = charmlp(context=2, embed=4, hidden=16)
    data = synthetic_names(300, context=2, seed=1)
    return model, train(make_engine("manual", model), data, lr=1.0, iterations=60, seed=0).params, data


def test_fixed_statistics_of_the_training_rows_reproduce_the_batch_forward_in_both_twins() -> None:
    model, params, data = trained()
    stats = model.manual.statistics(params, data.X)
    batch, fixed = model.manual.forward(params, data.X), model.manual.forward(params, data.X, stats)
    np.testing.assert_allclose(fixed[-1], batch[-1], rtol=1e-12, atol=1e-12)
    p = {k: torch.tensor(v) for k, v in params.items()}
    auto_stats = model.autograd.statistics(p, torch.tensor(data.X))
    np.testing.assert_allclose(auto_stats[1].numpy(), stats[1], rtol=1e-12)
    one = data.X[5:6]  # a single window: only fixed statistics can normalise it
    auto = model.autograd.forward(p, torch.tensor(one), auto_stats)[-1].numpy()
    np.testing.assert_allclose(model.manual.forward(params, one, stats)[-1], auto, rtol=1e-10, atol=1e-12)


def alternation(names: list[str]) -> float:
    """The share of neighbouring letters that are one vowel and one consonant."""
    pairs = [(a in "aeiou") != (b in "aeiou") for n in names for a, b in itertools.pairwise(n)]
    return sum(pairs) / len(pairs)


def test_sampled_names_follow_the_pattern_the_model_learnt() -> None:
    """The synthetic names alternate consonant, vowel: a trained model's samples mostly do too."""
    model, params, data = trained()
    names = sample_names(model, params, data, count=40, seed=0)
    assert len(names) == 40 and all(set(n) <= set(ALPHABET[1:]) for n in names)
    assert names == sample_names(model, params, data, count=40, seed=0)
    assert names != sample_names(model, params, data, count=40, seed=1)
    assert alternation(names) > 0.8
    assert alternation(sample_names(model, model.init_params(data, seed=0), data, count=40, seed=0)) < 0.7


def test_sampling_refuses_data_without_characters() -> None:
    model, params, data = trained()
    with pytest.raises(UsageError, match="end marker"):
        sample_names(model, params, Dataset(data.X, data.Y, "plain"), count=1)
    with pytest.raises(UsageError, match="count must be a whole number"):
        sample_names(model, params, data, count=-1)
