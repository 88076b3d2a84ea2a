"""The transformer model's twins: parity of every gradient and every named step, planted bugs, training, bad input.

One pre-LN block (embedding, layer norm, causal self-attention, MLP, residual sums, a softmax head at every
position) whose manual twin chains the layer twins' hand backward passes. Parity is held by the checker
(`check_gradients`: autograd the reference, finite differences in float64 the referee, tolerances derived from
the dtype and the sums), the named intermediates by its step view; each classic mistake, planted in a copy of
the manual twin (or of the layer twin it calls), is caught in the parameters and the step it is made in.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch

from gradtwin.autograd import transformer as auto_tx
from gradtwin.errors import DataError
from gradtwin.layers.manual import attention, layernorm
from gradtwin.manual import transformer as hand_tx
from gradtwin.models import MODELS, Dataset, Model, transformer
from gradtwin.parity.autograd_scales import autograd_scales
from gradtwin.parity.gradcheck import check_gradients
from gradtwin.parity.rounding import ROUNDING_OPS, gamma, unit_roundoff
from gradtwin.steps.explain import explain
from gradtwin.training import make_twin, train

DTYPES = ["float64", "float32"]
MODEL = MODELS["transformer"]
STEPS = ["Z", "Hf", "H2", "M", "R", "U", "N2", "H1", "A", "N1", "E"]  # from the loss back
EMBEDDING_AND_ATTENTION = {"Etok", "Epos", "gamma1", "beta1", "Wq", "Wk", "Wv", "Wo"}


def _problem(seed: int, scale: float | None = None) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A random problem of `check`'s kind (V <= 5, T 3, d 4, n <= 4) away from relu's kink: the model's own start
    with gamma and beta moved off 1 and 0, or (scale) standard normals times scale."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        data = MODEL.random_data(rng)
        if scale is None:
            params = MODEL.init_params(data, seed)
            params = {k: v + 0.5 * rng.standard_normal(v.shape) if v.ndim == 1 else v for k, v in params.items()}
        else:
            params = {k: scale * rng.standard_normal(s) for k, s in MODEL.param_shapes(data).items()}
        if MODEL.admissible is None or MODEL.admissible(params, data):
            return params, data.X, data.Y
    raise AssertionError("no admissible problem in 100 draws")


def _synthetic(model: Model, n: int, seed: int) -> Dataset:
    assert model.synthetic is not None
    return model.synthetic(n, seed)


def _failed(report: Any) -> set[str]:
    return {p.name for p in report.params if not p.ok}


def planted(
    edits: Sequence[tuple[str, str]] = (),
    layer: types.ModuleType | None = None,
    **layer_edits: list[tuple[str, str]],
) -> types.ModuleType:
    """A copy of the manual twin with one mistake: an (old, new) edit of its `backward`, or edits of the named
    functions of a copy of `layer` (the layer twin the model calls), bound in the copy in the layer's place.

    Each `old` must occur exactly once, so that a rewrite of the twin cannot leave a plant silently planting
    nothing; the twins themselves are never touched.
    """
    copy = types.ModuleType("gradtwin.manual.transformer_planted")
    exec(compile(inspect.getsource(hand_tx), hand_tx.__file__ or "<twin>", "exec"), copy.__dict__)
    source = inspect.getsource(hand_tx.backward)
    for old, new in edits:
        assert source.count(old) == 1, f"manual transformer.backward no longer holds {old!r} once"
        source = source.replace(old, new)
    exec(compile(source, hand_tx.__file__ or "<twin>", "exec"), copy.__dict__)
    if layer is not None:
        twin = types.ModuleType(f"{layer.__name__}_planted")
        twin.__dict__.update(vars(layer))
        for name, replacements in layer_edits.items():
            fn = inspect.getsource(getattr(layer, name))
            for old, new in replacements:
                assert fn.count(old) == 1, f"{layer.__name__}.{name} no longer holds {old!r} once"
                fn = fn.replace(old, new)
            exec(compile(fn, f"<planted {layer.__name__}.{name}>", "exec"), twin.__dict__)
        copy.__dict__[layer.__name__.rsplit(".", 1)[1]] = twin
    return copy


# ---- the twin contract and the registry ---------------------------------------------------------------


def test_twins_define_the_same_names_in_the_same_order_with_the_same_signatures() -> None:
    def public(m: types.ModuleType) -> list[str]:
        return [n for n, v in vars(m).items() if inspect.isfunction(v) and v.__module__ == m.__name__ and n[0] != "_"]

    shared = public(auto_tx)
    assert shared == ["forward", "predict", "loss", "gradients", "indices", "targets"]
    assert [n for n in public(hand_tx) if n in shared] == shared
    assert public(hand_tx)[:5] == ["forward", "predict", "loss", "backward", "gradients"]
    for name in shared:
        a, b = (list(inspect.signature(getattr(m, name)).parameters) for m in (hand_tx, auto_tx))
        assert a == b, f"{name}: manual takes {a}, autograd {b}"
    assert "gradtwin.layers.manual" not in inspect.getsource(auto_tx)


def test_the_registry_reads_the_shapes_from_the_data() -> None:
    data = _synthetic(MODEL, 40, 0)
    shapes = MODEL.param_shapes(data)
    V, T, d = 6, 8, 16
    assert shapes["Etok"] == (V, d) and shapes["Epos"] == (T, d) and shapes["Wout"] == (d, V)
    assert shapes["W1"] == (d, 4 * d) and shapes["W2"] == (4 * d, d) and "gammaf" in shapes
    assert "gammaf" not in transformer(final_norm=False).param_shapes(data)
    tiny = MODEL.random_data(np.random.default_rng(0))
    assert tiny.X.shape[1] == 3 and tiny.n <= 4
    assert sum(int(np.prod(s)) for s in MODEL.param_shapes(tiny).values()) <= 400  # a check point is quick
    assert set(MODEL.init_params(data, 0)) == set(shapes)


# ---- parity: every parameter and every named step -------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("seed", "scale"), [(0, None), (8, None), (2, None), (3, 0.3), (4, 3.0)]
)  # 8: the planted bugs'
def test_the_twins_agree_on_every_gradient_and_every_step(seed: int, scale: float | None, dtype: str) -> None:
    params, X, Y = _problem(seed, scale)
    report = check_gradients(MODEL.manual.backward, MODEL.autograd.loss, params, (X, Y), dtype=dtype,
                             manual_loss=MODEL.manual.loss)  # fmt: skip
    assert report.ok, report.table()
    assert {p.name for p in report.params} == set(params)
    assert report.steps is not None and [s.name for s in report.steps.steps] == STEPS, report.steps


def test_the_twins_agree_without_the_final_layer_norm() -> None:
    model = transformer(final_norm=False)
    data = model.random_data(np.random.default_rng(5))
    params = model.init_params(data, 5)
    report = check_gradients(model.manual.backward, model.autograd.loss, params, (data.X, data.Y))
    assert report.ok, report.table()
    assert report.steps is not None and [s.name for s in report.steps.steps] == [s for s in STEPS if s != "Hf"]


def test_forward_values_agree_and_a_position_sees_only_the_past() -> None:
    """Z of both twins in float64; changing the characters after position t leaves Z at t unchanged."""
    params, X, Y = _problem(6)
    Z = hand_tx.forward(params, X)["Z"]
    T_ = {k: torch.tensor(v) for k, v in params.items()}
    np.testing.assert_allclose(auto_tx.forward(T_, torch.tensor(X))["Z"].detach().numpy(), Z, rtol=1e-12, atol=1e-12)
    later = X.copy()
    later[:, 1:] = (later[:, 1:] + 1) % params["Etok"].shape[0]
    moved = hand_tx.forward(params, later)["Z"]
    np.testing.assert_array_equal(moved[:, 0], Z[:, 0])  # position 0 sees only itself
    assert not np.allclose(moved[:, 1:], Z[:, 1:])
    loss = float(hand_tx.loss(params, X, Y))
    assert loss == pytest.approx(float(auto_tx.loss(T_, torch.tensor(X), torch.tensor(Y))), rel=1e-13)
    np.testing.assert_array_equal(hand_tx.predict(params, X), np.argmax(Z[:, -1], axis=1))


def test_the_manual_twin_runs_on_torch_tensors_without_autograd() -> None:
    params, X, Y = _problem(7)
    on_numpy = hand_tx.backward(params, X, Y)
    with torch.no_grad():
        on_torch = hand_tx.backward({k: torch.tensor(v) for k, v in params.items()}, torch.tensor(X), torch.tensor(Y))
    assert list(on_torch) == list(on_numpy)
    for k, g in on_numpy.items():
        assert isinstance(on_torch[k], torch.Tensor) and on_torch[k].dtype == torch.float64, k
        np.testing.assert_allclose(on_torch[k].numpy(), g, rtol=1e-10, atol=1e-13, err_msg=k)


def test_explain_walks_every_step_with_its_chain_formula() -> None:
    """`gradtwin explain`'s view: every intermediate and parameter, its formula read off the Chain:: block."""
    ex = explain(transformer(width=4), rows=2)
    assert ex.ok, ex.table()
    names = [s.name for s in ex.steps]
    assert names[: len(STEPS)] == STEPS and set(names[len(STEPS) :]) == set(
        MODEL.param_shapes(_synthetic(MODEL, 24, 0))
    )
    assert all(s.formula for s in ex.steps), [s.name for s in ex.steps if not s.formula]
    assert ex.parents["H1"] == "H2" and ex.parents["Epos"] == "E"


# ---- planted bugs: each classic mistake is caught, in the parameters and the step it is made in -------------

SCALE = ('scale = 1.0 / math.sqrt(params["Wq"].shape[1])', "scale = 1.0")
NO_MASK = ("future = _future(X.shape[-2], xp, device(X))", "future = xp.zeros((X.shape[-2],) * 2, dtype=xp.bool)")
BUGS: dict[str, tuple[types.ModuleType, set[str] | None, str | None]] = {
    # (the planted twin, the parameters it gets wrong (None: every one), the first step that disagrees)
    # the scale left out of the forward and the backward alike: self-consistent, wrong against autograd
    "attention without the 1/sqrt(d) scale": (
        planted(layer=attention, forward=[SCALE], backward=[SCALE]), None, "dL/dZ does not agree",
    ),
    # the backward recomputes P without the causal mask: gradient flows to future positions (and dWo is off)
    "causal mask missing in the backward": (
        planted(layer=attention, backward=[NO_MASK]), EMBEDDING_AND_ATTENTION, "dL/dA agrees; dL/dN1 does not",
    ),
    # the mean's path dropped from every layer norm's dL/dX: wrong from the final norm down
    "layer norm without the centring term": (
        planted(layer=layernorm, backward=[("dX = dXc + dmu / d", "dX = dXc")]),
        set(MODEL.param_shapes(MODEL.random_data(np.random.default_rng(0)))) - {"Wout", "bout", "gammaf", "betaf"},
        "dL/dHf agrees; dL/dH2 does not",
    ),
    # only the MLP branch's gradient passed back to H1: the residual path's dL/dH2 lost
    "residual gradient dropped": (
        planted([('dH1 = dH2 + ln2["X"]', 'dH1 = ln2["X"]')]), EMBEDDING_AND_ATTENTION,
        "dL/dN2 agrees; dL/dH1 does not",
    ),
    # Epos is added to every window, so its gradient sums over them; the first window's alone is wrong
    "position embedding gradient not summed over the batch": (
        planted([('"Epos": xp.sum(dE, axis=0)', '"Epos": dE[0]')]), {"Epos"}, None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("bug", list(BUGS))
def test_a_planted_bug_is_caught_in_the_parameters_and_the_step_it_is_in(bug: str) -> None:
    module, wrong, first = BUGS[bug]
    params, X, Y = _problem(8)
    assert X.shape[0] >= 2  # a sum over one window is that window's
    report = check_gradients(module.backward, auto_tx.loss, params, (X, Y))
    assert not report.ok
    assert _failed(report) == (set(params) if wrong is None else wrong), report.table()
    assert report.steps is not None
    if first is None:
        assert report.steps.ok, report.steps  # every intermediate agrees: the mistake is in a parameter's step
    else:
        assert not report.steps.ok and first in (report.steps.first_wrong or ""), report.steps


# ---- training: both twins by the one loop -------------------------------------------------------------------


def _drift_bound(params: dict[str, np.ndarray], data: Dataset, lr: float, steps: int) -> np.ndarray:
    """Bound on max |p^manual_t - p^autograd_t| (float64) after each recorded step, rho = 1 as for the mlp.

    Each step's gradients lie within gamma(K + ops) * S of the exact ones (S from autograd's Jacobian, as the
    checker derives it), the update rounds twice more: delta_t = 2 (lr gamma S + u (lr |g| + |p| + lr |g|)), and
    e_{t+1} <= e_t + ||delta_t||_2 when a step does not amplify differences (the drift bound's rule for the mlp).
    """
    K = data.X.size + sum(v.size for v in params.values())
    g, u = gamma(K + ROUNDING_OPS, np.float64), unit_roundoff(np.float64)
    bound = np.zeros(steps + 1)
    for t in range(steps):
        p = {k: v[t] for k, v in params.items()}
        S, _ = autograd_scales(auto_tx.loss, p, (data.X, data.Y), K)
        grads = hand_tx.gradients(p, data.X, data.Y)
        delta = [2 * (lr * g * S[k] + u * (2 * lr * np.abs(grads[k]) + np.abs(p[k]))) for k in p]
        bound[t + 1] = bound[t] + float(np.sqrt(sum(np.sum(d * d) for d in delta)))
    return bound


def test_both_twins_train_step_by_step_within_the_drift_bound_and_the_loss_falls() -> None:
    model = transformer(context=6, width=4)
    data = _synthetic(model, 24, 0)
    lr, steps = model.default_lr, 20
    runs = {
        name: train(make_twin(name, model), data, lr=lr, iterations=steps, seed=0) for name in ("manual", "autograd")
    }
    manual, auto = runs["manual"].history, runs["autograd"].history
    assert list(manual.iteration) == list(range(steps + 1))
    bound = _drift_bound(manual.params, data, lr, steps)
    gap = np.array([max(np.max(np.abs(manual.params[k][t] - auto.params[k][t])) for k in manual.params)
                    for t in range(steps + 1)])  # fmt: skip
    assert np.all(gap <= bound), (gap, bound)
    np.testing.assert_allclose(manual.loss, auto.loss, rtol=1e-10)
    assert manual.loss[-1] < 0.8 * manual.loss[0]
    assert runs["manual"].stop_reason == "iterations"


# ---- bad input: one line, the same from both twins ---------------------------------------------------------


@pytest.mark.parametrize(
    ("X", "says"),
    [
        (np.zeros((2, 4)), "transformer: X must be 2-D (n, 3), T = 3 (the rows of Epos): a window of character "
                           "indices a row; got shape (2, 4)"),
        (np.zeros(3), "transformer: X must be 2-D (n, 3), T = 3 (the rows of Epos): a window of character "
                      "indices a row; got shape (3,)"),
        (np.array([[0.0, 1.5, 2.0]]), "transformer: X must hold whole-number character indices in [0, V) with "
                                      "V = 5; got 1.5 at (0, 1)"),
        (np.array([[0.0, 1.0, 1.0], [2.0, 7.0, 7.0]]), "transformer: X must hold whole-number character indices in "
                                                    "[0, V) with V = 5; got 7.0 at (1, 1)"),
        (np.array([[0.0, np.nan, 1.0]]), "transformer: X must hold whole-number character indices in [0, V) with "
                                         "V = 5; got nan at (0, 1)"),
    ],
)  # fmt: skip
def test_bad_windows_are_refused_with_one_line_naming_x(X: np.ndarray, says: str) -> None:
    params = MODEL.init_params(Dataset(np.zeros((2, 3)), np.array([4, 0]), "windows"), 0)
    Y = np.zeros(X.shape[0] if X.ndim else 1, dtype=np.int64)
    T_ = {k: torch.tensor(v) for k, v in params.items()}
    for call in (
        lambda: hand_tx.loss(params, X, Y),
        lambda: hand_tx.gradients(params, X, Y),
        lambda: auto_tx.loss(T_, torch.tensor(X), torch.tensor(Y)),
        lambda: auto_tx.predict(T_, torch.tensor(X)),
    ):
        with pytest.raises(DataError) as raised:
            call()
        assert str(raised.value) == says


def test_bad_labels_are_refused_with_one_line_naming_y() -> None:
    params = MODEL.init_params(Dataset(np.zeros((2, 3)), np.array([4, 0]), "windows"), 0)
    X = np.zeros((2, 3))
    T_ = {k: torch.tensor(v) for k, v in params.items()}
    for Y, says in [
        (np.array([0, 5]), "transformer: Y must hold character indices in [0, V) with V = 5; got 5 at row 1"),
        (np.array([0, 1, 2]), "transformer: Y must be 1-D (n,) with n = 2, the rows of X; got shape (3,)"),
    ]:
        with pytest.raises(DataError) as by_hand:
            hand_tx.loss(params, X, Y)
        with pytest.raises(DataError) as by_autograd:
            auto_tx.loss(T_, torch.tensor(X), torch.tensor(Y))
        assert str(by_hand.value) == str(by_autograd.value) == says


def test_parameters_trained_on_one_window_width_refuse_another() -> None:
    data = _synthetic(MODEL, 24, 0)
    params = train(make_twin("manual", MODEL), data, lr=MODEL.default_lr, iterations=2, seed=0).params
    narrow = data.X[:, :5]
    says = r"^transformer: X must be 2-D \(n, 8\), T = 8 \(the rows of Epos\).* got shape \(18, 5\)$"
    with pytest.raises(DataError, match=says):
        MODEL.manual.predict(params, narrow)
    with pytest.raises(DataError, match=says):
        MODEL.autograd.predict({k: torch.tensor(v) for k, v in params.items()}, torch.tensor(narrow))
