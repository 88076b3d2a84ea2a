"""The grid layers, embedding, conv2d and maxpool2d: hand twin against autograd, torch's own F.*, planted bugs."""

from __future__ import annotations

import inspect
import types
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradtwin.errors import DataError, DataTypeError, UsageError
from gradtwin.layers import check_layer
from gradtwin.layers.autograd import conv2d as auto_conv
from gradtwin.layers.autograd import embedding as auto_emb
from gradtwin.layers.autograd import maxpool2d as auto_pool
from gradtwin.layers.manual import conv2d as conv
from gradtwin.layers.manual import embedding as emb
from gradtwin.layers.manual import maxpool2d as pool
from gradtwin.parity.report import GradientReport

DTYPES = ["float64", "float32"]


def planted(twin: types.ModuleType, line: str, bug: str) -> types.ModuleType:
    """A copy of the manual twin with one line of its source replaced by the bug (the twin is untouched)."""
    source = inspect.getsource(twin)
    assert source.count(line) == 1, f"{line!r} is not one line of {twin.__name__}"
    copy = types.ModuleType(f"{twin.__name__}_planted")
    exec(compile(source.replace(line, bug), copy.__name__, "exec"), copy.__dict__)
    return copy


def wrong(report: GradientReport) -> set[str]:
    """The tensors the report finds wrong."""
    assert not report.ok, report.table()
    return {p.name for p in report.params if not p.ok}


def as_torch(params: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v) for k, v in params.items()}


# ---------------------------------------------------------------- embedding


def _emb_case(V: int, d: int, shape: tuple[int, ...], seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W": rng.standard_normal((V, d))}, rng.integers(0, V, shape)  # few rows: repeats are certain


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("V", "d", "shape"), [(5, 3, (7,)), (4, 2, (3, 4)), (6, 4, (2, 3, 2))])
def test_embedding_parity(dtype: str, V: int, d: int, shape: tuple[int, ...]) -> None:
    params, X = _emb_case(V, d, shape, seed=V)
    report = check_layer(emb, auto_emb, params, X, dtype=dtype)
    assert report.ok, report.table()
    assert [p.name for p in report.params] == ["W"]  # integer indices are not differentiated


def test_embedding_forward_and_backward_equal_torch_in_numpy_and_torch() -> None:
    params, X = _emb_case(5, 3, (4, 3), seed=1)
    dout = np.random.default_rng(2).standard_normal((4, 3, 3))
    ref = F.embedding(torch.tensor(X), torch.tensor(params["W"]))
    np.testing.assert_array_equal(emb.forward(params, X), ref.numpy())
    np.testing.assert_array_equal(emb.forward(as_torch(params), torch.tensor(X)).numpy(), ref.numpy())
    want = auto_emb.backward(as_torch(params), torch.tensor(X), torch.tensor(dout))["W"].numpy()
    np.testing.assert_allclose(emb.backward(params, X, dout)["W"], want, rtol=1e-14, atol=1e-14)
    got = emb.backward(as_torch(params), torch.tensor(X), torch.tensor(dout))["W"]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-14, atol=1e-14)


def test_embedding_repeated_index_gets_the_sum_of_its_gradients() -> None:
    W = np.zeros((3, 2))
    dW = emb.backward({"W": W}, np.array([2, 0, 2, 2]), np.array([[1.0, 2], [5, 5], [10, 20], [100, 200]]))["W"]
    np.testing.assert_array_equal(dW, [[5, 5], [0, 0], [111, 222]])


def test_embedding_assignment_instead_of_accumulation_is_caught() -> None:
    bug = planted(emb, "_add_at(dW, idx, rows)", "dW[idx] = rows")  # the last write wins, the others are lost
    params, X = _emb_case(4, 3, (6,), seed=3)
    assert len(set(X.tolist())) < X.size
    report = check_layer(bug, auto_emb, params, X)
    assert wrong(report) == {"W"}
    assert "only rows looked up more than once are wrong" in report.table()
    assert "accumulate with += for every use" in report.table()


EMB_BAD = [
    (
        np.array([[0, 1], [5, 2]]),
        DataError,
        r"X must hold indices in \[0, V\) with V = 5, the rows of W; got 5 at \(1, 0\)",
    ),
    (np.array([3, -1]), DataError, r"X must hold indices in \[0, V\) with V = 5, the rows of W; got -1 at \(1,\)"),
    (np.array([0.0, 1.0]), DataTypeError, r"X must hold integer indices; got dtype float64"),
]


@pytest.mark.parametrize("twin", [emb, auto_emb], ids=["manual", "autograd"])
@pytest.mark.parametrize(("X", "error", "says"), EMB_BAD)
def test_embedding_bad_indices_are_one_line_naming_index_and_V(
    twin: types.ModuleType, X: Any, error: type[Exception], says: str
) -> None:
    params: dict[str, Any] = {"W": np.ones((5, 2))}
    dout: Any = np.ones((*X.shape, 2))
    if twin is auto_emb:
        params, X, dout = as_torch(params), torch.tensor(X), torch.tensor(dout)
    for call in (lambda: twin.forward(params, X), lambda: twin.backward(params, X, dout)):
        with pytest.raises(error, match=f"^embedding: {says}$"):
            call()


# ---------------------------------------------------------------- conv2d

CONV = [  # (N, C_in, H, W, C_out, kh, kw, stride, padding): small, as every element is finite-differenced
    (2, 2, 5, 4, 3, 3, 3, 1, 0),
    (1, 2, 6, 5, 2, 3, 2, 2, 1),  # stride 2 with padding; a rectangular kernel
    (1, 1, 7, 6, 2, 2, 3, 3, 2),  # stride 3 leaves rows and columns no window reaches
]


def _conv_case(N: int, C: int, H: int, W: int, O: int, kh: int, kw: int, seed: int) -> tuple[dict[str, Any], Any]:
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((O, C, kh, kw)), "b": rng.standard_normal(O)}
    return params, rng.standard_normal((N, C, H, W))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV, ids=lambda c: "s{7}p{8}".format(*c))
def test_conv2d_parity(dtype: str, case: tuple[int, ...]) -> None:
    *shape, s, p = case
    params, X = _conv_case(*shape, seed=s + p)
    report = check_layer(conv, auto_conv, params, X, s, p, dtype=dtype)
    assert report.ok, report.table()
    assert [r.name for r in report.params] == ["W", "b", "X"]


@pytest.mark.parametrize("case", [*CONV, (2, 3, 8, 8, 4, 3, 3, 1, 1), (1, 2, 9, 7, 3, 4, 2, 2, 3)])
def test_conv2d_equals_torch_in_numpy_and_torch(case: tuple[int, ...]) -> None:
    *shape, s, p = case
    params, X = _conv_case(*shape, seed=7)
    want = F.conv2d(torch.tensor(X), torch.tensor(params["W"]), torch.tensor(params["b"]), stride=s, padding=p)
    dout = np.random.default_rng(8).standard_normal(tuple(want.shape))
    grads = auto_conv.backward(as_torch(params), torch.tensor(X), torch.tensor(dout), s, p)
    np.testing.assert_allclose(conv.forward(params, X, s, p), want.numpy(), rtol=1e-12, atol=1e-12)
    for got in (
        conv.backward(params, X, dout, s, p),
        conv.backward(as_torch(params), torch.tensor(X), torch.tensor(dout), s, p),
    ):
        for k, g in grads.items():
            np.testing.assert_allclose(np.asarray(got[k]), g.numpy(), rtol=1e-12, atol=1e-12, err_msg=k)


CONV_BUGS = {
    # dW sampled the input at stride s - 1: an off-by-one in the backward's stride
    "stride": ("seen = _shifted(Xp, i, j, s, Ho, Wo)", "seen = _shifted(Xp, i, j, s - 1, Ho, Wo)", {"W"}),
    # dX cut out of dXp one pixel off: an off-by-one in the backward's padding
    "padding": (
        "dX = dXp[:, :, p : p + H, p : p + Wd]",
        "dX = dXp[:, :, p - 1 : p - 1 + H, p - 1 : p - 1 + Wd]",
        {"X"},
    ),
    # the input gradient correlated with W itself, not the flipped kernel
    "no flip": ("W_flipped = xp.flip(W, axis=(2, 3))", "W_flipped = W", {"X"}),
}


@pytest.mark.parametrize("name", list(CONV_BUGS))
def test_conv2d_planted_bug_is_caught_in_the_right_tensor(name: str) -> None:
    line, bug, tensors = CONV_BUGS[name]
    params, X = _conv_case(1, 2, 6, 5, 2, 3, 3, seed=4)
    report = check_layer(planted(conv, line, bug), auto_conv, params, X, 2, 1)
    assert wrong(report) == tensors
    (tensor,) = tensors
    assert f"{tensor}: worst in hand vs autograd; the hand-derived gradient is wrong" in report.table()
    assert f"the mistake is in the derivation of {tensor} alone" in report.table()
    assert check_layer(conv, auto_conv, params, X, 2, 1).ok  # the same case passes with the twin itself


def test_conv2d_kernel_flip_is_what_the_input_gradient_needs() -> None:
    """With a kernel symmetric under the flip the unflipped bug is invisible; with a random one it is not."""
    bug = planted(conv, *CONV_BUGS["no flip"][:2])
    params, X = _conv_case(1, 1, 5, 5, 1, 3, 3, seed=5)
    symmetric = {"W": params["W"] + params["W"][:, :, ::-1, ::-1], "b": params["b"]}
    assert check_layer(bug, auto_conv, symmetric, X, 1, 1).ok
    assert wrong(check_layer(bug, auto_conv, params, X, 1, 1)) == {"X"}


CONV_BAD = [  # (W's shape, X's shape, stride, padding, message)
    (
        (2, 1, 5, 5),
        (1, 1, 2, 3),
        1,
        1,
        r"the kernel \(kh, kw\) must fit in the padded input \(H \+ 2\*padding, W \+ 2\*padding\); got kernel "
        r"\(5, 5\) and padded input \(4, 5\)",
    ),
    (
        (2, 1, 3, 3),
        (1, 2, 4, 4),
        1,
        0,
        r"X must be 4-D \(N, C_in, H, W\) with C_in = 1, W's second axis; got shape \(1, 2, 4, 4\)",
    ),
    ((2, 1, 3, 3), (1, 1, 4, 4), 0, 0, r"stride must be an integer >= 1 and padding >= 0; got stride=0, padding=0"),
    ((2, 1, 3, 3), (1, 1, 4, 4), 1.5, 0, r"stride must be an integer >= 1 and padding >= 0; got stride=1.5, padding=0"),
    (
        (2, 1, 3, 3),
        (1, 1, 4, 4),
        1,
        "one",
        r"stride must be an integer >= 1 and padding >= 0; got stride=1, padding=one",
    ),
]


@pytest.mark.parametrize("twin", [conv, auto_conv], ids=["manual", "autograd"])
@pytest.mark.parametrize(("wshape", "xshape", "s", "p", "says"), CONV_BAD)
def test_conv2d_bad_shapes_are_one_line(
    twin: types.ModuleType, wshape: Any, xshape: Any, s: Any, p: Any, says: str
) -> None:
    params: dict[str, Any] = {"W": np.ones(wshape), "b": np.zeros(wshape[0])}
    X: Any = np.ones(xshape)
    if twin is auto_conv:
        params, X = as_torch(params), torch.tensor(X)
    for call in (lambda: twin.forward(params, X, s, p), lambda: twin.backward(params, X, X, s, p)):
        with pytest.raises(UsageError, match=f"^conv2d: {says}$"):
            call()


# ---------------------------------------------------------------- maxpool2d

POOL = [  # (N, C, H, W, kernel, stride)
    (2, 2, 4, 6, 2, 2),  # tiles the input
    (1, 2, 7, 5, 3, 2),  # overlapping windows, and a trailing row and column dropped (floor)
    (2, 1, 5, 5, 2, 1),  # stride 1: every inner element is in four windows
]


def _pool_input(N: int, C: int, H: int, W: int, seed: int, ties: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 3, (N, C, H, W)).astype(np.float64) if ties else rng.standard_normal((N, C, H, W))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("case", POOL, ids=lambda c: "k{4}s{5}".format(*c))
def test_maxpool2d_parity(dtype: str, ties: bool, case: tuple[int, ...]) -> None:
    *shape, k, s = case
    X = _pool_input(*shape, seed=k + s, ties=ties)
    report = check_layer(pool, auto_pool, {}, X, k, s, dtype=dtype)
    assert report.ok, report.table()


@pytest.mark.parametrize("case", [*POOL, (1, 3, 8, 8, 3, 3), (2, 2, 6, 9, 4, 3)], ids=str)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_maxpool2d_equals_torch_exactly_ties_included(case: tuple[int, ...], ties: bool) -> None:
    *shape, k, s = case
    X = _pool_input(*shape, seed=9, ties=ties)
    Xt = torch.tensor(X, requires_grad=True)
    want = F.max_pool2d(Xt, k, s)
    # whole numbers, so that overlapping windows' sums are exact in any order: a wrong element shows as != 0
    dout = torch.tensor(np.random.default_rng(10).integers(1, 100, tuple(want.shape)).astype(np.float64))
    (dX,) = torch.autograd.grad(want, Xt, dout)
    np.testing.assert_array_equal(pool.forward({}, X, k, s), want.detach().numpy())
    np.testing.assert_array_equal(
        pool.backward({}, X, dout.numpy(), k, s)["X"], dX.numpy()
    )  # the same element, exactly
    np.testing.assert_array_equal(pool.backward({}, torch.tensor(X), dout, k, s)["X"].numpy(), dX.numpy())


def test_maxpool2d_tie_goes_to_the_first_element_in_row_major_order_as_torch_says() -> None:
    """A window of four equal values: the gradient goes to its top-left; with the tie in the bottom row,
    to the left one; torch's own return_indices agree."""
    X = np.array([[[[1.0, 1.0, 0.0, 2.0], [1.0, 1.0, 2.0, 2.0]]]])  # windows: all ones; then 0 2 / 2 2
    _, index = F.max_pool2d(torch.tensor(X), 2, 2, return_indices=True)
    assert index.flatten().tolist() == [0, 3]  # flat positions in the (2, 4) image: (0, 0) and (0, 3)
    dX = pool.backward({}, X, np.array([[[[1.0, 10.0]]]]), 2, 2)["X"]
    np.testing.assert_array_equal(dX, [[[[1, 0, 0, 10], [0, 0, 0, 0]]]])


def test_maxpool2d_drops_what_the_pool_does_not_tile_as_torch_floor_mode() -> None:
    X = np.arange(5 * 7, dtype=np.float64).reshape(1, 1, 5, 7)  # 2x2 windows, stride 2: row 4 and column 6 left out
    out = pool.forward({}, X, 2, 2)
    assert out.shape == (1, 1, 2, 3) == tuple(F.max_pool2d(torch.tensor(X), 2, 2).shape)
    dX = pool.backward({}, X, np.ones(out.shape), 2, 2)["X"]
    assert dX[0, 0, 4, :].sum() == 0 and dX[0, 0, :, 6].sum() == 0 and dX.sum() == 6


def test_maxpool2d_gradient_to_every_tied_element_is_caught() -> None:
    bug = planted(
        pool,
        "routed = xp.where(which == i * k + j, dout, zero)",
        "routed = xp.where(_shifted(X, i, j, s, Ho, Wo) == _argmax(X, k, s, Ho, Wo)[0], dout, zero)",
    )
    X = _pool_input(2, 2, 4, 4, seed=11, ties=True)
    report = check_layer(bug, auto_pool, {}, X, 2, 2)
    assert wrong(report) == {"X"}
    (row,) = report.params
    assert row.comparison.startswith("hand vs autograd") and row.hand != row.autograd
    assert check_layer(bug, auto_pool, {}, _pool_input(2, 2, 4, 4, seed=11, ties=False), 2, 2).ok  # only ties show it
    # each tied element alone lies between its one-sided slopes, but not their sum: never excused as a kink
    lenient = check_layer(bug, auto_pool, {}, X, 2, 2, allow_kinks=True)
    assert not lenient.ok and "subgradients, both valid" not in (lenient.params[0].diagnosis or ""), lenient.table()
    assert check_layer(pool, auto_pool, {}, X, 2, 2, allow_kinks=True).ok


POOL_BAD = [  # (X's shape, kernel, stride, message)
    ((1, 1, 3, 5), 4, 4, r"X must be 4-D \(N, C, H, W\) with H, W >= kernel = 4; got shape \(1, 1, 3, 5\)"),
    ((3, 5), 2, 2, r"X must be 4-D \(N, C, H, W\) with H, W >= kernel = 2; got shape \(3, 5\)"),
    ((1, 1, 4, 4), 2, 0, r"kernel and stride must be integers >= 1; got kernel=2, stride=0"),
    ((1, 1, 4, 4), 2.5, None, r"kernel and stride must be integers >= 1; got kernel=2.5, stride=2.5"),
]


@pytest.mark.parametrize("twin", [pool, auto_pool], ids=["manual", "autograd"])
@pytest.mark.parametrize(("xshape", "k", "s", "says"), POOL_BAD)
def test_maxpool2d_bad_shapes_are_one_line(twin: types.ModuleType, xshape: Any, k: Any, s: Any, says: str) -> None:
    X: Any = np.ones(xshape) if twin is pool else torch.ones(xshape)
    for call in (lambda: twin.forward({}, X, k, s), lambda: twin.backward({}, X, X, k, s)):
        with pytest.raises(UsageError, match=f"^maxpool2d: {says}$"):
            call()


def test_maxpool2d_stride_defaults_to_the_kernel_as_in_torch() -> None:
    X = _pool_input(1, 2, 6, 6, seed=12, ties=False)
    np.testing.assert_array_equal(pool.forward({}, X, 3), F.max_pool2d(torch.tensor(X), 3).numpy())


@pytest.mark.parametrize(("manual", "autograd"), [(emb, auto_emb), (conv, auto_conv), (pool, auto_pool)], ids=str)
def test_twins_define_the_same_public_names_in_order_with_the_same_signatures(
    manual: types.ModuleType, autograd: types.ModuleType
) -> None:
    def public(twin: types.ModuleType) -> list[str]:
        return [
            n for n, v in vars(twin).items() if inspect.isfunction(v) and v.__module__ == twin.__name__ and n[0] != "_"
        ]

    assert public(manual) == public(autograd) == ["forward", "backward"]
    for name in public(manual):
        assert (
            inspect.signature(getattr(manual, name)).parameters.keys()
            == inspect.signature(getattr(autograd, name)).parameters.keys()
        )


def test_maxpool2d_nan_propagates_and_takes_the_gradient_as_in_torch() -> None:
    X = np.array([[[[1.0, np.nan, 3.0, 0.0], [np.nan, 2.0, 1.0, 1.0]]]])
    Xt = torch.tensor(X, requires_grad=True)
    want = F.max_pool2d(Xt, 2, 2)
    (dX,) = torch.autograd.grad(want, Xt, torch.tensor([[[[1.0, 10.0]]]]))
    np.testing.assert_array_equal(pool.forward({}, X, 2, 2), want.detach().numpy())  # NaN where torch has NaN
    np.testing.assert_array_equal(pool.backward({}, X, np.array([[[[1.0, 10.0]]]]), 2, 2)["X"], dX.numpy())


@pytest.mark.parametrize(
    ("manual", "autograd", "params", "X", "extra"),
    [
        (emb, auto_emb, {"W": np.arange(12.0).reshape(4, 3) / 7}, np.array([[1, 3, 1], [0, 1, 1]]), ()),
        (
            conv,
            auto_conv,
            _conv_case(1, 2, 5, 5, 2, 3, 3, seed=13)[0],
            _conv_case(1, 2, 5, 5, 2, 3, 3, seed=13)[1],
            (2, 1),
        ),
        (pool, auto_pool, {}, _pool_input(1, 2, 5, 5, seed=14, ties=True), (2, 1)),
    ],
    ids=["embedding", "conv2d", "maxpool2d"],
)
def test_manual_twins_run_on_torch_tensors_without_autograd(
    manual: types.ModuleType, autograd: types.ModuleType, params: dict[str, Any], X: Any, extra: tuple[int, ...]
) -> None:
    report = check_layer(manual, autograd, params, X, *extra, dtype="float32", manual_array="torch")
    assert report.ok, report.table()
