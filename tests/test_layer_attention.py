"""The attention and cross-entropy layer twins: parity, torch's own forward, planted bugs, bad input."""

from __future__ import annotations

import inspect
import textwrap
import types
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradtwin.errors import DataError, DataTypeError, UsageError
from gradtwin.layers import check_layer
from gradtwin.layers.autograd import attention as auto_attention
from gradtwin.layers.autograd import cross_entropy as auto_ce
from gradtwin.layers.manual import attention, cross_entropy

DTYPES = ["float64", "float32"]
# (X's shape, d_k, d_v, d_out or None: no output projection); a single position, one sequence, a batch
ATTENTION_SHAPES = [((1, 3), 2, 2, None), ((5, 4), 3, 2, None), ((2, 4, 3), 2, 3, None), ((2, 5, 4), 3, 2, 3)]
CE_SHAPES = [(1, 2), (6, 4), (9, 3)]


def _attention_case(shape: tuple[int, ...], d_k: int, d_v: int, d_out: int | None, seed: int = 0) -> tuple[dict, Any]:
    rng = np.random.default_rng(seed)
    d = shape[-1]
    params = {"Wq": rng.standard_normal((d, d_k)), "Wk": rng.standard_normal((d, d_k)),
              "Wv": rng.standard_normal((d, d_v))}  # fmt: skip
    if d_out is not None:
        params["Wo"] = rng.standard_normal((d_v, d_out))
    return params, rng.standard_normal(shape)


def _ce_case(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return 2.0 * rng.standard_normal((n, k)), rng.integers(0, k, n)


def _tensors(params: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v) for k, v in params.items()}


def planted(module: types.ModuleType, **edits: list[tuple[str, str]]) -> types.ModuleType:
    """A copy of `module` whose named functions are recompiled with lines replaced: one planted bug.

    Each `old` must occur exactly once in its function, so that a change of the twin cannot leave a plant
    silently planting nothing; the twin itself is never touched.
    """
    copy = types.ModuleType(f"{module.__name__}_planted")
    copy.__dict__.update(vars(module))
    for name, replacements in edits.items():
        source = textwrap.dedent(inspect.getsource(getattr(module, name)))
        for old, new in replacements:
            assert source.count(old) == 1, f"{module.__name__}.{name} no longer holds {old!r} once"
            source = source.replace(old, new)
        exec(compile(source, f"<planted {module.__name__}.{name}>", "exec"), copy.__dict__)
    return copy


SCALE = ('scale = 1.0 / math.sqrt(params["Wq"].shape[1])', "scale = 1.0")
NO_MASK = ("future = _future(X.shape[-2], xp, device(X))", "future = xp.zeros((X.shape[-2],) * 2, dtype=xp.bool)")
DIAGONAL = ("P * (dP - xp.sum(dP * P, axis=-1, keepdims=True))", "P * (1 - P) * dP")
SWAP_Q = ('"Wq": _rows(X, xp).T @ _rows(dQ, xp)', '"Wq": _rows(X, xp).T @ _rows(dK, xp)')
SWAP_K = ('"Wk": _rows(X, xp).T @ _rows(dK, xp)', '"Wk": _rows(X, xp).T @ _rows(dQ, xp)')
ATTENTION_BUGS = {  # the planted twin, and the tensors whose gradients it gets wrong
    # the 1/sqrt(d_k) left out of the forward and the backward alike: self-consistent, wrong against torch
    "no 1/sqrt(d_k) scale": (planted(attention, forward=[SCALE], backward=[SCALE]), {"Wq", "Wk", "Wv", "X"}),
    # the backward recomputes P without the causal mask: the gradient leaks to later positions
    "mask missing in the backward": (planted(attention, backward=[NO_MASK]), {"Wq", "Wk", "Wv", "X"}),
    # the softmax's diagonal P (1 - P) in place of its Jacobian diag(p) - p p^T: V's path stays right
    "elementwise P(1-P) for the softmax Jacobian": (planted(attention, backward=[DIAGONAL]), {"Wq", "Wk", "X"}),
    # dL/dWq from dL/dK and dL/dWk from dL/dQ: the two weights' gradients swapped, X's right
    "Q and K swapped in dWq, dWk": (planted(attention, backward=[SWAP_Q, SWAP_K]), {"Wq", "Wk"}),
}
NO_MEAN = (
    "dloss = (P - _onehot(Y, X.shape[1], X.dtype, xp, device(X))) / n",
    "dloss = P - _onehot(Y, X.shape[1], X.dtype, xp, device(X))",
)


# ---- parity ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ATTENTION_SHAPES, ids=str)
def test_attention_twins_agree(case: tuple, dtype: str) -> None:
    params, X = _attention_case(*case)
    report = check_layer(attention, auto_attention, params, X, dtype=dtype)
    assert report.ok, report.table()
    assert {p.name for p in report.params} == {*params, "X"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CE_SHAPES, ids=str)
def test_cross_entropy_twins_agree(case: tuple[int, int], dtype: str) -> None:
    Z, Y = _ce_case(*case)
    report = check_layer(cross_entropy, auto_ce, {}, Z, Y, dtype=dtype)
    assert report.ok, report.table()
    assert [p.name for p in report.params] == ["X"]


def test_a_sampled_check_of_a_larger_attention_agrees() -> None:
    """The checker's sampled method (its default above 1,000 elements, a sketch of the scales): still agree."""
    params, X = _attention_case((2, 8, 6), 4, 4, 6, seed=3)
    report = check_layer(attention, auto_attention, params, X, dtype="float32", method="sampled")
    assert report.method == "sampled" and report.ok, report.table()


# ---- the forward against torch's own ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ATTENTION_SHAPES, ids=str)
def test_attention_forward_equals_torch_scaled_dot_product_attention(case: tuple, dtype: str) -> None:
    params, X = _attention_case(*case)
    p, x = _tensors(params), torch.tensor(X)
    A = F.scaled_dot_product_attention(x @ p["Wq"], x @ p["Wk"], x @ p["Wv"], is_causal=True)
    want = (A @ p["Wo"] if "Wo" in p else A).numpy()  # torch in float64: the reference
    got = attention.forward({k: v.astype(dtype) for k, v in params.items()}, X.astype(dtype))
    assert got.dtype == np.dtype(dtype) and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=(1e-12 if dtype == "float64" else 1e-5) * np.abs(want).max())
    np.testing.assert_allclose(auto_attention.forward(p, x).numpy(), want, rtol=0, atol=1e-14)


def test_attention_forward_is_the_explicit_formula() -> None:
    """softmax(mask(Q K^T / sqrt(d_k))) V written out, a position seeing itself and the ones before it only."""
    params, X = _attention_case((6, 4), 3, 2, None, seed=1)
    Q, K, V = (X @ params[k] for k in ("Wq", "Wk", "Wv"))
    S = Q @ K.T / np.sqrt(3)
    S[np.triu_indices(6, 1)] = -np.inf
    P = np.exp(S - S.max(axis=1, keepdims=True))
    np.testing.assert_allclose(attention.forward(params, X), (P / P.sum(axis=1, keepdims=True)) @ V, rtol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CE_SHAPES, ids=str)
def test_cross_entropy_forward_equals_torch_cross_entropy(case: tuple[int, int], dtype: str) -> None:
    Z, Y = _ce_case(*case)
    want = float(F.cross_entropy(torch.tensor(Z), torch.tensor(Y)))
    got = cross_entropy.forward({}, Z.astype(dtype), Y)
    assert np.asarray(got).shape == () and np.asarray(got).dtype == np.dtype(dtype)
    assert got == pytest.approx(want, rel=1e-13 if dtype == "float64" else 1e-6)
    assert float(auto_ce.forward({}, torch.tensor(Z), torch.tensor(Y))) == pytest.approx(want, rel=1e-15)


def test_cross_entropy_is_stable_for_huge_logits() -> None:
    """log-sum-exp: logits of 1e4 overflow exp, not the shifted form; loss and gradient stay finite and right."""
    Z, Y = _ce_case(6, 4, seed=2)
    Z = 1e4 * Z
    want = F.cross_entropy(torch.tensor(Z), torch.tensor(Y))
    assert float(cross_entropy.forward({}, Z, Y)) == pytest.approx(float(want), rel=1e-13)
    dZ = cross_entropy.backward({}, Z, np.array(1.0), Y)["X"]
    np.testing.assert_allclose(dZ, auto_ce.backward({}, torch.tensor(Z), torch.tensor(1.0), torch.tensor(Y))["X"],
                               atol=1e-15)  # fmt: skip
    assert np.isfinite(dZ).all()


def test_attention_is_stable_for_huge_scores() -> None:
    """Scores of order 1e4 (exp overflows unshifted): the shifted softmax gives finite values, torch's."""
    params, X = _attention_case((2, 5, 4), 3, 2, None, seed=2)
    X = 100.0 * X
    p, x = _tensors(params), torch.tensor(X)
    out, grads = attention.forward(params, X), attention.backward(params, X, np.ones((2, 5, 2)))
    want = auto_attention.backward(p, x, torch.ones(2, 5, 2, dtype=torch.float64))
    np.testing.assert_allclose(out, auto_attention.forward(p, x).numpy(), rtol=1e-10, atol=1e-10)
    for k, g in grads.items():
        assert np.isfinite(g).all(), k
        np.testing.assert_allclose(g, want[k].numpy(), rtol=1e-8, atol=1e-8 * np.abs(want[k].numpy()).max())


def test_the_manual_twins_run_on_torch_tensors_without_autograd() -> None:
    """The array API: the same source on torch tensors gives NumPy's numbers, in the tensors' dtype."""
    params, X = _attention_case((2, 5, 4), 3, 2, 3, seed=4)
    dout = np.random.default_rng(5).standard_normal((2, 5, 3))
    on_numpy = attention.backward(params, X, dout)
    on_torch = attention.backward(_tensors(params), torch.tensor(X), torch.tensor(dout))
    for k, g in on_numpy.items():
        assert isinstance(on_torch[k], torch.Tensor) and on_torch[k].dtype == torch.float64
        np.testing.assert_allclose(on_torch[k].numpy(), g, rtol=1e-12, atol=1e-14)
    Z, Y = _ce_case(6, 4)
    got = cross_entropy.backward({}, torch.tensor(Z, dtype=torch.float32), torch.tensor(2.0), torch.tensor(Y))["X"]
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), cross_entropy.backward({}, Z, 2.0, Y)["X"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("twin", [attention, auto_attention], ids=["manual", "autograd"])
def test_the_output_at_one_position_sends_no_gradient_to_later_positions(twin: types.ModuleType) -> None:
    """Causality: with dL/d(out) only at position t, dL/dX is exactly 0 at every later position."""
    params, X = _attention_case((2, 6, 4), 3, 2, None, seed=6)
    t = 2
    dout = np.zeros((2, 6, 2))
    dout[:, t] = np.random.default_rng(7).standard_normal((2, 2))
    args = (params, X, dout) if twin is attention else (_tensors(params), torch.tensor(X), torch.tensor(dout))
    dX = np.asarray(twin.backward(*args)["X"])
    assert np.all(dX[:, t + 1 :] == 0.0) and np.abs(dX[:, : t + 1]).min() > 0


# ---- planted bugs ----------------------------------------------------------------------------------


def test_the_plants_compile_and_planting_nothing_passes() -> None:
    """A copy replacing a line by itself is the twin: any failure below is the planted line's."""
    params, X = _attention_case((2, 5, 4), 3, 2, None)
    same = planted(attention, forward=[(SCALE[0], SCALE[0])], backward=[(SCALE[0], SCALE[0])])
    assert check_layer(same, auto_attention, params, X).ok
    with pytest.raises(AssertionError, match="no longer holds"):
        planted(attention, backward=[("a line the twin does not hold", "")])


@pytest.mark.parametrize("bug", list(ATTENTION_BUGS))
def test_each_planted_attention_bug_is_caught_in_the_right_tensors(bug: str) -> None:
    module, wrong = ATTENTION_BUGS[bug]
    params, X = _attention_case((2, 5, 4), 3, 2, None)
    report = check_layer(module, auto_attention, params, X)
    assert not report.ok
    assert {p.name for p in report.params if not p.ok} == wrong, report.table()
    for p in report.params:
        if not p.ok:
            assert p.comparison == "hand vs autograd", p
            assert p.diagnosis.startswith("the hand-derived gradient is wrong (autograd and finite differences agree)")
    right = sorted({*params, "X"} - wrong)
    if right:  # the checker says where the mistake is not
        wrong_names = ", ".join(p.name for p in report.params if not p.ok)
        assert f"{', '.join(right)} agree(s) but {wrong_names} do(es) not" in report.table()


def test_attention_without_the_scale_is_wrong_against_torch_in_the_forward_too() -> None:
    """Left out of both passes the mistake is self-consistent; torch's forward is what shows it."""
    module = ATTENTION_BUGS["no 1/sqrt(d_k) scale"][0]
    params, X = _attention_case((2, 5, 4), 3, 2, None)
    torch_out = auto_attention.forward(_tensors(params), torch.tensor(X)).numpy()
    assert not np.allclose(module.forward(params, X), torch_out, rtol=1e-3)
    np.testing.assert_allclose(attention.forward(params, X), torch_out, rtol=1e-12)


def test_a_backward_without_the_mask_leaks_gradient_to_later_positions() -> None:
    module = ATTENTION_BUGS["mask missing in the backward"][0]
    params, X = _attention_case((2, 6, 4), 3, 2, None, seed=6)
    dout = np.zeros((2, 6, 2))
    dout[:, 2] = 1.0
    assert np.abs(module.backward(params, X, dout)["X"][:, 3:]).min() > 0  # the real twin's are 0 (test above)


def test_cross_entropy_without_the_mean_is_caught_as_n_times_the_gradient() -> None:
    n = 6
    module = planted(cross_entropy, backward=[NO_MEAN])
    Z, Y = _ce_case(n, 4)
    report = check_layer(module, auto_ce, {}, Z, Y)
    assert not report.ok
    [p] = report.params
    assert p.name == "X" and not p.ok
    assert f"the hand-derived gradient is {n} times the true one" in p.diagnosis, report.table()


# ---- bad input -------------------------------------------------------------------------------------

_P, _X = _attention_case((5, 4), 3, 2, None)
ATTENTION_BAD = [
    (dict(_P), np.ones(4), DataError,
     r"attention: X must be 2-D \(T, d\) or 3-D \(B, T, d\) with T >= 1; got shape \(4,\)$"),
    (dict(_P), np.ones((0, 4)), DataError, r"got shape \(0, 4\)$"),
    (dict(_P), np.ones((5, 3)), DataError,
     r"attention: Wq and Wk must be \(d, d_k\), Wv \(d, d_v\) with d = 3, the last axis of X; got Wq \(4, 3\), "
     r"Wk \(4, 3\), Wv \(4, 2\)$"),
    ({**_P, "Wk": np.ones((4, 2))}, _X, DataError, r"with d = 4, the last axis of X; got Wq \(4, 3\), Wk \(4, 2\), "),
    ({**_P, "Wo": np.ones((3, 3))}, _X, DataError,
     r"Wv \(d, d_v\), Wo \(d_v, d_out\) with d = 4, the last axis of X; got .*, Wo \(3, 3\)$"),
    ({"Wq": _P["Wq"], "Wk": _P["Wk"]}, _X, UsageError,
     r"attention: params must be Wq, Wk, Wv and, optionally, Wo; got Wq, Wk$"),
]  # fmt: skip
_Z, _Y = _ce_case(5, 3)
CE_BAD = [
    (_Z, np.array([0, 1, 2, 3, 1]), DataError,
     r"cross_entropy: Y must hold class indices in \[0, k\) with k = 3, the columns of X; got 3 at row 3$"),
    (_Z, np.array([0, -1, 2, 1, 1]), DataError, r"got -1 at row 1$"),
    (_Z, _Y.astype(float), DataTypeError, r"cross_entropy: Y must hold integer class indices; got dtype float64$"),
    (_Z, _Y[:4], DataError,
     r"cross_entropy: X \(the logits\) must be 2-D \(n, k\) with n, k >= 1 and Y 1-D \(n,\); got X \(5, 3\), "
     r"Y \(4,\)$"),
    (_Z[:0], _Y[:0], DataError, r"got X \(0, 3\), Y \(0,\)$"),
]  # fmt: skip


@pytest.mark.parametrize("side", ["manual", "autograd"])
@pytest.mark.parametrize("case", range(len(ATTENTION_BAD)))
def test_attention_bad_input_gets_one_line_naming_it_in_both_twins(case: int, side: str) -> None:
    params, X, error, says = ATTENTION_BAD[case]
    if side == "manual":
        calls = [lambda: attention.forward(params, X), lambda: attention.backward(params, X, np.ones(1))]
    else:
        p, x = _tensors(params), torch.tensor(X)
        calls = [lambda: auto_attention.forward(p, x), lambda: auto_attention.backward(p, x, torch.ones(1))]
    for call in calls:
        with pytest.raises(error, match=says) as raised:
            call()
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize("side", ["manual", "autograd"])
@pytest.mark.parametrize("case", range(len(CE_BAD)))
def test_cross_entropy_bad_input_gets_one_line_naming_it_in_both_twins(case: int, side: str) -> None:
    Z, Y, error, says = CE_BAD[case]
    if side == "manual":
        calls = [lambda: cross_entropy.forward({}, Z, Y), lambda: cross_entropy.backward({}, Z, np.array(1.0), Y)]
    else:
        z, y = torch.tensor(Z), torch.tensor(Y)
        calls = [lambda: auto_ce.forward({}, z, y), lambda: auto_ce.backward({}, z, torch.tensor(1.0), y)]
    for call in calls:
        with pytest.raises(error, match=says) as raised:
            call()
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize("layer", ["attention", "cross_entropy"])
def test_the_twins_define_the_same_names_in_the_same_order_with_the_same_signatures(layer: str) -> None:
    manual = {"attention": attention, "cross_entropy": cross_entropy}[layer]
    auto = {"attention": auto_attention, "cross_entropy": auto_ce}[layer]

    def defined(m: types.ModuleType) -> list[str]:
        return [n for n, v in vars(m).items() if inspect.isfunction(v) and v.__module__ == m.__name__]

    assert defined(auto) == [n for n in defined(manual) if n in defined(auto)]
    assert defined(auto)[:2] == ["forward", "backward"]
    for name in defined(auto):
        assert inspect.signature(getattr(manual, name)).parameters.keys() == \
            inspect.signature(getattr(auto, name)).parameters.keys()  # fmt: skip
