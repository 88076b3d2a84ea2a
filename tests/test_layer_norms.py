"""The normalisation and dropout layers' twins: batchnorm, layernorm, dropout.

Each is held to autograd by `check_layer` (a random upstream gradient, never .sum(); finite
differences in float64 as referee) in float64 and float32 at several shapes; its forward equals
PyTorch's own; and each classic mistake, planted as a one-line edit of a copy of the manual
backward, is reported as a mismatch of the right tensor.
"""

from __future__ import annotations

import inspect
import types
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import DTYPES
from gradtwin.errors import DataError, UsageError
from gradtwin.layers import check_layer
from gradtwin.layers.autograd import batchnorm as auto_bn
from gradtwin.layers.autograd import dropout as auto_do
from gradtwin.layers.autograd import layernorm as auto_ln
from gradtwin.layers.manual import batchnorm as hand_bn
from gradtwin.layers.manual import dropout as hand_do
from gradtwin.layers.manual import layernorm as hand_ln

TWINS = {"batchnorm": (hand_bn, auto_bn), "layernorm": (hand_ln, auto_ln), "dropout": (hand_do, auto_do)}
WRONG = "the hand-derived gradient is wrong (autograd and finite differences agree)"


def _norm_case(shape: tuple[int, ...], seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """gamma, beta (d,) and X of `shape` whose features have different means and spreads."""
    rng = np.random.default_rng(seed)
    d = shape[-1]
    params = {"gamma": rng.uniform(0.5, 2.0, d) * rng.choice([-1.0, 1.0], d), "beta": rng.standard_normal(d)}
    X = rng.standard_normal(shape) * rng.uniform(0.5, 3.0, d) + rng.uniform(-3.0, 3.0, d)
    return params, X


def _failed(report: Any) -> dict[str, str | None]:
    """name -> diagnosis of every tensor the report finds wrong."""
    return {p.name: p.diagnosis for p in report.params if not p.ok}


def planted(module: types.ModuleType, *edits: tuple[str, str, int]) -> types.ModuleType:
    """A copy of a manual twin whose `backward` has each (old, new, count) edit made to its source.

    Each `old` must occur `count` times in backward, so that the test fails, not passes, when the
    twin is rewritten and the planted line no longer exists. The twin itself is never touched.
    """
    copy = types.ModuleType(f"{module.__name__}_planted")
    exec(compile(inspect.getsource(module), module.__file__ or "<twin>", "exec"), copy.__dict__)
    source = inspect.getsource(module.backward)
    for old, new, count in edits:
        assert source.count(old) == count, f"{old!r} occurs {source.count(old)} times in {module.__name__}.backward"
        source = source.replace(old, new)
    exec(compile(source, module.__file__ or "<twin>", "exec"), copy.__dict__)
    return copy


# ---- the twin contract ------------------------------------------------------------------------


@pytest.mark.parametrize("layer", list(TWINS))
def test_twins_define_the_same_names_in_the_same_order_with_the_same_signatures(layer: str) -> None:
    manual, autograd = TWINS[layer]

    def functions(m: types.ModuleType) -> list[str]:
        return [n for n, v in vars(m).items() if inspect.isfunction(v) and v.__module__ == m.__name__]

    shared = functions(autograd)
    assert shared[:2] == ["forward", "backward"]
    assert [n for n in functions(manual) if n in shared] == shared
    for name in shared:
        a = list(inspect.signature(getattr(manual, name)).parameters)
        b = list(inspect.signature(getattr(autograd, name)).parameters)
        assert a == b, f"{layer}.{name}: manual takes {a}, autograd {b}"
    assert "gradtwin.layers.manual" not in inspect.getsource(autograd)  # the autograd twin imports no hand code


# ---- parity: hand against autograd, refereed by finite differences -------------------------------


NORM_CASES = [
    (layer, shape, dtype)
    for layer in ("batchnorm", "layernorm")
    for shape in [(3, 4), (5, 3), (9, 6)]
    for dtype in DTYPES
]
# Two values to normalise (a batch of two rows, a row of two features) give Xhat = +-1 up to eps: the
# exact gradient is small and the backward reaches it by cancellation, whose float32 rounding the
# derived tolerance (scaled by the gradient's own Jacobian) does not see; so these run in float64.
# (With one feature, layer norm's output is the constant beta.)
NORM_CASES += [("batchnorm", (2, 1), "float64"), ("batchnorm", (2, 4), "float64")]
NORM_CASES += [("layernorm", (1, 2), "float64"), ("layernorm", (3, 2), "float64")]


@pytest.mark.parametrize(("layer", "shape", "dtype"), NORM_CASES)
def test_normalisation_twins_agree(layer: str, shape: tuple[int, int], dtype: str) -> None:
    params, X = _norm_case(shape, seed=sum(shape))
    report = check_layer(*TWINS[layer], params, X, dtype=dtype, seed=1)
    assert report.ok, report.table()
    assert [p.name for p in report.params] == ["gamma", "beta", "X"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_over_leading_axes(dtype: str) -> None:
    """X (n, T, d), a sequence of rows: each row normalised on its own, gamma and beta shared."""
    params, X = _norm_case((2, 3, 4), seed=7)
    report = check_layer(hand_ln, auto_ln, params, X, dtype=dtype)
    assert report.ok, report.table()


def test_batchnorm_of_a_constant_feature_is_finite_and_agrees() -> None:
    """var = 0 for a constant column: Xhat = 0 and inv = 1/sqrt(eps), no 0/0."""
    params, X = _norm_case((6, 3), seed=3)
    X[:, 1] = 2.5
    grads = hand_bn.backward(params, X, np.ones_like(X))
    assert all(np.isfinite(g).all() for g in grads.values())
    report = check_layer(hand_bn, auto_bn, params, X)
    assert report.ok, report.table()


@settings(max_examples=8)
@given(
    layer=st.sampled_from(["batchnorm", "layernorm"]),
    n=st.integers(2, 7),
    d=st.integers(2, 5),  # layer norm of one feature is constant: see NORM_CASES
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_normalisation_twins_agree_at_random_shapes(layer: str, n: int, d: int, dtype: str, seed: int) -> None:
    assume(dtype == "float64" or (n if layer == "batchnorm" else d) >= 3)  # see NORM_CASES
    params, X = _norm_case((n, d), seed)
    report = check_layer(*TWINS[layer], params, X, dtype=dtype, seed=seed)
    assert report.ok, report.table()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "p"), [((4, 3), 0.0), ((5, 4), 0.25), ((6, 7), 0.5), ((3, 8), 0.9)])
def test_dropout_twins_agree(shape: tuple[int, int], p: float, dtype: str) -> None:
    X = np.random.default_rng(int(p * 10)).standard_normal(shape)
    keep = hand_do.mask(shape, p, seed=2)
    report = check_layer(hand_do, auto_do, {}, X, keep, p, dtype=dtype)
    assert report.ok, report.table()


@pytest.mark.parametrize("layer", list(TWINS))
def test_manual_twins_run_on_torch_tensors(layer: str, device: str) -> None:
    """The array-API manual twins on torch tensors without autograd, in float32, against autograd (on cuda too)."""
    if layer == "dropout":
        X = np.random.default_rng(0).standard_normal((5, 4))
        params: dict[str, np.ndarray] = {}
        extra: tuple[Any, ...] = (hand_do.mask(X.shape, 0.3, seed=1), 0.3)
    else:
        params, X = _norm_case((5, 4), seed=0)
        extra = ()
    report = check_layer(*TWINS[layer], params, X, *extra, dtype="float32", manual_array="torch", device=device)
    assert report.ok, report.table()
    T = {k: torch.as_tensor(v) for k, v in params.items()}
    out = TWINS[layer][0].forward(T, torch.as_tensor(X), *(torch.as_tensor(e) for e in extra))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64


# ---- the forward is PyTorch's own ---------------------------------------------------------------


def test_batchnorm_forward_is_torchs_training_batch_norm() -> None:
    """The batch statistics with the biased variance, as torch.nn.BatchNorm1d normalises in training."""
    params, X = _norm_case((8, 5), seed=4)
    layer = torch.nn.BatchNorm1d(5, dtype=torch.float64).train()
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(params["gamma"]))
        layer.bias.copy_(torch.as_tensor(params["beta"]))
        theirs = layer(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(hand_bn.forward(params, X), theirs, rtol=1e-12, atol=1e-12)
    T = {k: torch.as_tensor(v) for k, v in params.items()}
    np.testing.assert_allclose(auto_bn.forward(T, torch.as_tensor(X)).numpy(), theirs, rtol=1e-12, atol=1e-12)
    unbiased = (X - X.mean(0)) / np.sqrt(X.var(0, ddof=1) + hand_bn.EPS) * params["gamma"] + params["beta"]
    assert not np.allclose(hand_bn.forward(params, X), unbiased)  # the comparison can tell n from n - 1


def test_layernorm_forward_is_torchs_layer_norm() -> None:
    params, X = _norm_case((4, 3, 6), seed=5)
    T = {k: torch.as_tensor(v) for k, v in params.items()}
    theirs = torch.nn.LayerNorm(6, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(T["gamma"])
        theirs.bias.copy_(T["beta"])
        expected = theirs(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(hand_ln.forward(params, X), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(auto_ln.forward(T, torch.as_tensor(X)).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_dropout_forward_is_torchs_dropout_on_the_same_mask() -> None:
    """F.dropout's output, with its mask read off its zeros, is our forward on that mask: the same 1/(1 - p)."""
    X = torch.as_tensor(np.random.default_rng(6).uniform(0.5, 2.0, (20, 10)))  # no zeros of its own
    p = 0.3
    torch.manual_seed(0)
    theirs = F.dropout(X, p, training=True)
    keep = (theirs != 0).to(X.dtype)
    assert 0 < float(keep.mean()) < 1
    torch.testing.assert_close(auto_do.forward({}, X, keep, p), theirs, rtol=1e-15, atol=0)
    np.testing.assert_allclose(hand_do.forward({}, X.numpy(), keep.numpy(), p), theirs.numpy(), rtol=1e-15)


def test_the_mask_is_seeded_and_drops_about_p() -> None:
    a, b = hand_do.mask((200, 50), 0.3, seed=1), hand_do.mask((200, 50), 0.3, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, hand_do.mask((200, 50), 0.3, seed=2))
    assert set(np.unique(a)) == {0.0, 1.0} and a.dtype == np.float64
    assert abs((1 - a.mean()) - 0.3) < 0.02  # 10,000 draws: 4.6 standard deviations
    assert hand_do.mask((3, 4), 0.0).all()  # p = 0 keeps everything: the layer is the identity
    X = np.random.default_rng(0).standard_normal((3, 4))
    np.testing.assert_array_equal(hand_do.forward({}, X, hand_do.mask(X.shape, 0.0), 0.0), X)


def test_the_backward_twins_agree_when_called_directly() -> None:
    """autograd.backward is the vector-Jacobian product the checker computes; both return the same keys."""
    for layer, (manual, autograd) in TWINS.items():
        if layer == "dropout":
            X, params = np.random.default_rng(1).standard_normal((4, 3)), {}
            extra: tuple[Any, ...] = (hand_do.mask((4, 3), 0.5, 1), 0.5)
        else:
            params, X = _norm_case((4, 3), seed=1)
            extra = ()
        dout = np.random.default_rng(2).standard_normal(X.shape)
        hand = manual.backward(params, X, dout, *extra)
        T = {k: torch.as_tensor(v) for k, v in params.items()}
        auto = autograd.backward(T, torch.as_tensor(X), torch.as_tensor(dout), *extra)
        assert set(hand) == set(auto) == {*params, "X"}
        for k in hand:
            np.testing.assert_allclose(hand[k], auto[k].numpy(), rtol=1e-10, atol=1e-12, err_msg=f"{layer} {k}")


# ---- planted bugs: each classic mistake is caught, in the tensor it is made in ----------------------

BUGS = {
    "batchnorm without the centring term": (hand_bn, [("dX = dXc + dmu / n", "dX = dXc", 1)]),
    "batchnorm with n - 1 in the variance's derivative": (
        hand_bn,
        [("dvar * (2.0 / n) * Xc", "dvar * (2.0 / (n - 1)) * Xc", 1)],
    ),
    "layernorm without the mean term": (hand_ln, [("dX = dXc + dmu / d", "dX = dXc", 1)]),
    "layernorm over the wrong axis (the batch's)": (
        hand_ln,
        [("axis=-1", "axis=0", 4), ("d = X.shape[-1]", "d = X.shape[0]", 1)],
    ),
}


@pytest.mark.parametrize("bug", list(BUGS))
def test_a_planted_normalisation_bug_is_caught_in_the_tensor_it_is_in(bug: str) -> None:
    module, edits = BUGS[bug]
    autograd = auto_bn if module is hand_bn else auto_ln
    params, X = _norm_case((6, 4), seed=11)
    assert check_layer(module, autograd, params, X).ok  # the real twin passes on the same case
    report = check_layer(planted(module, *edits), autograd, params, X)
    failed = _failed(report)
    assert not report.ok
    # the wrong axis also normalises the wrong way before dL/dgamma; the rest touch dL/dX alone
    assert set(failed) == ({"X", "gamma"} if "axis" in bug else {"X"}), report.table()
    assert all(WRONG in (d or "") for d in failed.values()), report.table()
    assert "beta agree(s)" in " ".join(report.diagnoses), report.diagnoses


def test_the_unbiased_variance_bug_hides_from_a_sum_of_the_output() -> None:
    """Why the checker never uses .sum(): with dL/dout = 1 the variance path carries nothing, and the n - 1
    bug gives the right dL/dX; a random upstream gradient exposes it (the test above)."""
    params, X = _norm_case((6, 4), seed=11)
    buggy = planted(hand_bn, *BUGS["batchnorm with n - 1 in the variance's derivative"][1])
    ones = np.ones_like(X)
    np.testing.assert_allclose(buggy.backward(params, X, ones)["X"], hand_bn.backward(params, X, ones)["X"], atol=1e-12)
    R = np.random.default_rng(0).standard_normal(X.shape)
    assert not np.allclose(buggy.backward(params, X, R)["X"], hand_bn.backward(params, X, R)["X"])


def test_dropout_without_the_inverted_scale_is_caught_as_a_factor() -> None:
    X = np.random.default_rng(12).standard_normal((5, 4))
    keep = hand_do.mask(X.shape, 0.5, seed=3)
    report = check_layer(planted(hand_do, (" * scale  #", "  #", 1)), auto_do, {}, X, keep, 0.5)
    assert not report.ok
    assert _failed(report) == {"X": report.params[0].diagnosis}
    assert "the hand-derived gradient is half the true one" in (report.params[0].diagnosis or ""), report.table()


def test_dropout_with_a_fresh_mask_in_the_backward_is_caught() -> None:
    X = np.random.default_rng(13).standard_normal((6, 5))
    keep = hand_do.mask(X.shape, 0.5, seed=3)
    fresh = planted(hand_do, ("xp.astype(keep, X.dtype)", "xp.astype(mask(X.shape, p, 4), X.dtype)", 1))
    report = check_layer(fresh, auto_do, {}, X, keep, 0.5)
    assert not report.ok
    assert WRONG in (_failed(report)["X"] or ""), report.table()


# ---- bad input: the same one line from both twins -----------------------------------------------


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1, float("nan"), "0.5", None, True])
def test_dropout_refuses_p_outside_zero_to_one(p: Any) -> None:
    X = np.ones((2, 3))
    said = []
    for call in (
        lambda: hand_do.mask(X.shape, p),
        lambda: hand_do.forward({}, X, np.ones_like(X), p),
        lambda: hand_do.backward({}, X, X, np.ones_like(X), p),
        lambda: auto_do.forward({}, torch.as_tensor(X), torch.ones(2, 3), p),
        lambda: auto_do.backward({}, torch.as_tensor(X), torch.ones(2, 3), torch.ones(2, 3), p),
    ):
        with pytest.raises(UsageError) as raised:
            call()
        said.append(str(raised.value))
    assert said == [f"dropout: p must be the probability of dropping an element, in [0, 1); got {p!r}"] * 5


@pytest.mark.parametrize(
    ("keep", "says"),
    [
        (np.ones((3, 2)), "dropout: keep (the mask) must have X's shape (2, 3); got (3, 2)"),
        (np.full((2, 3), 2.0), "dropout: keep (the mask) must hold only 0 (drop) and 1 (keep); got 6 other value(s)"),
    ],
)
def test_dropout_refuses_a_mask_not_of_x_or_not_of_zeros_and_ones(keep: np.ndarray, says: str) -> None:
    X = np.ones((2, 3))
    for call in (
        lambda: hand_do.forward({}, X, keep, 0.5),
        lambda: hand_do.backward({}, X, X, keep, 0.5),
        lambda: auto_do.forward({}, torch.as_tensor(X), torch.as_tensor(keep), 0.5),
    ):
        with pytest.raises(UsageError) as raised:
            call()
        assert str(raised.value) == says


@pytest.mark.parametrize("shape", [(1, 3), (4,), (2, 3, 4)])
def test_batchnorm_refuses_what_has_no_batch_statistics(shape: tuple[int, ...]) -> None:
    params = {"gamma": np.ones(3), "beta": np.zeros(3)}
    says = (
        "batchnorm: X must be 2-D (n, d) with n >= 2 rows (one row's batch statistics normalise it to 0); "
        f"got shape {shape}"
    )
    for call in (
        lambda: hand_bn.forward(params, np.ones(shape)),
        lambda: hand_bn.backward(params, np.ones(shape), np.ones(shape)),
        lambda: auto_bn.forward({k: torch.as_tensor(v) for k, v in params.items()}, torch.ones(shape)),
    ):
        with pytest.raises(DataError) as raised:
            call()
        assert str(raised.value) == says
