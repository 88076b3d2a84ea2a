"""gradtwin's own autodiff engine against torch float64: every op, broadcasting, reuse, ties, a graph run twice.

One helper (`check_op`) runs an expression in the engine and in torch, compares the forward value
first, then each input's gradient under a RANDOM upstream gradient (never .sum()), and says which
tensor failed, where, both values and the tolerance. Tolerances are derived, not guessed: each
output or gradient element is a sum of at most K terms, each rounded a few times, so each side
is within gamma(K + ROUNDING_OPS) * sum|terms| of the exact value (`parity.rounding.tolerance`)
and the two within twice that. sum|terms| is the same expression on |inputs| and |upstream| for
ops linear in each input; the value itself for one-term pointwise ops; written out where a
formula cancels (tanh' = 1 - t^2) or amplifies (e^(a - out)). Planted bugs in copies of the
engine's own functions must be caught.
"""

from __future__ import annotations

import functools
import inspect
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

from gradtwin.autodiff import Tensor, graph, no_grad, ops, tap, unbroadcast
from gradtwin.autodiff import tensor as tensor_module
from gradtwin.errors import UsageError
from gradtwin.parity.rounding import tolerance

TINY = float(np.finfo(np.float64).tiny)
Scales = tuple[np.ndarray, list[np.ndarray]]


def _close(what: str, ours: Any, theirs: Any, tol: Any) -> None:
    """Every element of `ours` within `tol` of torch's, or an AssertionError naming the worst one."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape}, torch {b.shape}"
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), a.shape)
    err = np.abs(a - b)
    if not np.all(err <= tol):
        i = np.unravel_index(int(np.argmax(err - tol)), a.shape) if a.ndim else ()
        raise AssertionError(
            f"{what}: worst at {i}: engine {a[i]!r}, torch {b[i]!r}, abs err {err[i]:.3g}, tolerance {tol[i]:.3g}"
        )


def _torch_run(fn: Callable[..., torch.Tensor], xs: Sequence[np.ndarray], G: np.ndarray) -> tuple[Any, list[Any]]:
    leaves = [torch.tensor(x, requires_grad=True) for x in xs]
    out = fn(*leaves)
    out.backward(torch.tensor(G, dtype=out.dtype))
    return out.detach().numpy(), [leaf.grad.numpy() for leaf in leaves if leaf.grad is not None]


def check_op(
    ours: Callable[..., Tensor],
    theirs: Callable[..., torch.Tensor],
    xs: Sequence[np.ndarray],
    *,
    linear: Callable[..., torch.Tensor] | None = None,
    scale: Callable[[Sequence[np.ndarray], np.ndarray, np.ndarray, list[np.ndarray]], Scales] | None = None,
    seed: int = 0,
) -> None:
    """Engine vs torch float64: the forward value, then each gradient under a random upstream gradient.

    linear: the expression's form on |inputs| (the op itself, or add for sub) when it is linear in each
    input: sum|terms| is then its value and its gradient at |inputs| with |upstream|. scale(xs, out, G,
    grads) -> (forward scale, [gradient scales]) for others; the default (one term per element) |value|.
    """
    leaves = [Tensor(x, requires_grad=True) for x in xs]
    out = ours(*leaves)
    value = np.asarray(theirs(*[torch.tensor(x) for x in xs]))
    K = max([x.size for x in xs] + [value.size])  # the longest sum any output or gradient element is
    G = np.random.default_rng(seed).standard_normal(value.shape)  # (out's shape) the upstream gradient
    ref, ref_grads = _torch_run(theirs, xs, G)
    if linear is not None:
        s_out, s_grads = _torch_run(linear, [np.abs(x) for x in xs], np.abs(G))
        s_out, s_grads = np.abs(s_out), [np.abs(s) for s in s_grads]
    elif scale is not None:
        s_out, s_grads = scale(xs, ref, G, ref_grads)
    else:
        s_out, s_grads = np.abs(ref), [np.abs(g) for g in ref_grads]
    _close("forward", out.data, ref, 2 * tolerance(np.float64, K, s_out) + TINY)
    out.backward(G)
    for i, (leaf, g, s) in enumerate(zip(leaves, ref_grads, s_grads, strict=True)):
        _close(f"gradient of input {i} {leaf.shape}", leaf.grad, g, 2 * tolerance(np.float64, K, s) + TINY)


def _normal(*shape: int, seed: int = 0, lo: float | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2.0
    if lo is not None:  # away from zero (a divisor, a log's argument): |x| >= lo
        x = np.sign(x + (x == 0)) * (np.abs(x) + lo)
    return x


def _tanh_scale(xs: Sequence[np.ndarray], out: np.ndarray, G: np.ndarray, grads: list[np.ndarray]) -> Scales:
    return np.abs(out), [np.abs(G) * (1.0 + out * out)]  # 1 - t^2: terms 1 and t^2


def _sigmoid_scale(xs: Sequence[np.ndarray], out: np.ndarray, G: np.ndarray, grads: list[np.ndarray]) -> Scales:
    return np.abs(out), [np.abs(G) * (out + out * out)]  # s (1 - s): terms s and s^2


def _logaddexp_scale(xs: Sequence[np.ndarray], out: np.ndarray, G: np.ndarray, grads: list[np.ndarray]) -> Scales:
    """e^(x - out): the rounding of x - out (terms |x|, |out|) becomes a relative error of the exp."""
    full = [np.abs(G * np.exp(x - out)) * (1 + np.abs(x) + np.abs(out)) for x in xs]  # (out's shape) each
    return np.abs(out), [unbroadcast(f, x.shape) for f, x in zip(full, xs, strict=True)]


def _lse_scale(xs: Sequence[np.ndarray], out: np.ndarray, G: np.ndarray, grads: list[np.ndarray]) -> Scales:
    m = np.max(xs[0], axis=1)
    return np.abs(m) + np.abs(out - m), [np.abs(grads[0])]  # m + log(sum e^(x - m))


# ---- every op against torch ---------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    ours: Callable[..., Tensor]
    theirs: Callable[..., torch.Tensor]
    shapes: tuple[tuple[int, ...], ...]
    linear: Callable[..., torch.Tensor] | None = None
    scale: Any = None
    lo: float | None = None  # inputs kept this far from zero


ADD = lambda a, b: a + b  # noqa: E731
CASES: dict[str, Case] = {
    "add": Case(lambda a, b: a + b, ADD, ((3, 4), (4,)), linear=ADD),
    "sub": Case(lambda a, b: a - b, lambda a, b: a - b, ((3, 1), (1, 4)), linear=ADD),
    "mul": Case(lambda a, b: a * b, lambda a, b: a * b, ((2, 3), (2, 3)), linear=lambda a, b: a * b),
    "div": Case(lambda a, b: a / b, lambda a, b: a / b, ((2, 3), (3,)), linear=lambda a, b: a / b, lo=0.5),
    "neg": Case(lambda a: -a, lambda a: -a, ((5,),), linear=lambda a: -a),
    "pow 2": Case(lambda a: a**2, lambda a: a**2, ((4, 3),)),
    "pow 3": Case(lambda a: ops.pow(a, 3), lambda a: a**3, ((4,),)),
    "pow 0.5": Case(lambda a: (a * a) ** 0.5, lambda a: (a * a) ** 0.5, ((4,),), lo=0.5),
    "pow -1": Case(lambda a: a**-1, lambda a: a**-1, ((4,),), lo=0.5),
    "matmul 2d 2d": Case(lambda a, b: a @ b, lambda a, b: a @ b, ((3, 4), (4, 2)), linear=lambda a, b: a @ b),
    "matmul 2d 1d": Case(lambda a, b: a @ b, lambda a, b: a @ b, ((3, 4), (4,)), linear=lambda a, b: a @ b),
    "matmul 1d 2d": Case(lambda a, b: a @ b, lambda a, b: a @ b, ((4,), (4, 2)), linear=lambda a, b: a @ b),
    "matmul 1d 1d": Case(lambda a, b: a @ b, lambda a, b: a @ b, ((4,), (4,)), linear=lambda a, b: a @ b),
    "matmul batched": Case(lambda a, b: a @ b, lambda a, b: a @ b, ((5, 2, 3), (3, 4)), linear=lambda a, b: a @ b),
    "matmul batch broadcast": Case(
        lambda a, b: a @ b, lambda a, b: a @ b, ((2, 1, 2, 3), (4, 3, 2)), linear=lambda a, b: a @ b
    ),
    "matmul batched 1d": Case(lambda a, b: a @ b, lambda a, b: a @ b, ((3,), (5, 3, 2)), linear=lambda a, b: a @ b),
    "sum all": Case(lambda a: a.sum(), lambda a: a.sum(), ((2, 3, 4),), linear=lambda a: a.sum()),
    "sum axis": Case(lambda a: a.sum(axis=1), lambda a: a.sum(dim=1), ((2, 3, 4),), linear=lambda a: a.sum(dim=1)),
    "sum axes keepdims": Case(
        lambda a: a.sum(axis=(0, 2), keepdims=True),
        lambda a: a.sum(dim=(0, 2), keepdim=True),
        ((2, 3, 4),),
        linear=lambda a: a.sum(dim=(0, 2), keepdim=True),
    ),
    "mean all": Case(lambda a: a.mean(), lambda a: a.mean(), ((2, 3, 4),), linear=lambda a: a.mean()),
    "mean axis -1": Case(
        lambda a: a.mean(axis=-1), lambda a: a.mean(dim=-1), ((2, 3, 4),), linear=lambda a: a.mean(dim=-1)
    ),
    "mean keepdims": Case(
        lambda a: ops.mean(a, 0, keepdims=True),
        lambda a: a.mean(dim=0, keepdim=True),
        ((3, 4),),
        linear=lambda a: a.mean(dim=0, keepdim=True),
    ),
    "reshape": Case(
        lambda a: a.reshape(4, 6), lambda a: a.reshape(4, 6), ((2, 3, 4),), linear=lambda a: a.reshape(4, 6)
    ),
    "transpose": Case(lambda a: a.T, lambda a: a.T, ((3, 4),), linear=lambda a: a.T),
    "transpose axes": Case(
        lambda a: ops.transpose(a, (1, 2, 0)),
        lambda a: a.permute(1, 2, 0),
        ((2, 3, 4),),
        linear=lambda a: a.permute(1, 2, 0),
    ),
    "take rows": Case(
        lambda a: ops.take(a, np.array([2, 0, 2, 1])),
        lambda a: a[torch.tensor([2, 0, 2, 1])],
        ((3, 4),),
        linear=lambda a: a[torch.tensor([2, 0, 2, 1])],
    ),
    "take axis 1": Case(
        lambda a: ops.take(a, np.array([3, 3, 0]), axis=1),
        lambda a: a[:, torch.tensor([3, 3, 0])],
        ((3, 4),),
        linear=lambda a: a[:, torch.tensor([3, 3, 0])],
    ),
    "pick X[i, Y]": Case(
        lambda a: a[np.array([0, 0, 2, 1]), np.array([1, 1, 0, 3])],
        lambda a: a[torch.tensor([0, 0, 2, 1]), torch.tensor([1, 1, 0, 3])],
        ((3, 4),),
        linear=lambda a: a[torch.tensor([0, 0, 2, 1]), torch.tensor([1, 1, 0, 3])],
    ),
    "slice": Case(lambda a: a[1:, ::2], lambda a: a[1:, ::2], ((3, 4),), linear=lambda a: a[1:, ::2]),
    "exp": Case(ops.exp, torch.exp, ((3, 4),)),
    "log": Case(lambda a: ops.log(a * a), lambda a: torch.log(a * a), ((3, 4),), lo=0.5),
    "tanh": Case(ops.tanh, torch.tanh, ((3, 4),), scale=_tanh_scale),
    "relu": Case(ops.relu, torch.relu, ((3, 4),)),
    "sigmoid": Case(ops.sigmoid, torch.sigmoid, ((3, 4),), scale=_sigmoid_scale),
    "softplus": Case(ops.softplus, lambda a: torch.nn.functional.softplus(a, threshold=40.0), ((3, 4),)),
    "logaddexp": Case(ops.logaddexp, torch.logaddexp, ((3, 4), (4,)), scale=_logaddexp_scale),
    "logsumexp": Case(
        lambda a: ops.logsumexp(a, axis=1), lambda a: torch.logsumexp(a, dim=1), ((3, 5),), scale=_lse_scale
    ),
    "amax": Case(lambda a: ops.amax(a, axis=0), lambda a: torch.amax(a, dim=0), ((3, 4),)),
    "where": Case(
        lambda a, b: ops.where(np.array([True, False, True, False]), a, b),
        lambda a, b: torch.where(torch.tensor([True, False, True, False]), a, b),
        ((3, 4), (3, 1)),
        linear=lambda a, b: torch.where(torch.tensor([True, False, True, False]), a, b),
    ),
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("op", list(CASES))
def test_every_op_agrees_with_torch_float64_in_value_then_gradient(op: str, seed: int) -> None:
    case = CASES[op]
    xs = [_normal(*shape, seed=10 * seed + i, lo=case.lo) for i, shape in enumerate(case.shapes)]
    check_op(case.ours, case.theirs, xs, linear=case.linear, scale=case.scale, seed=seed)


def test_relu_at_zero_sends_no_gradient_as_torch() -> None:
    check_op(ops.relu, torch.relu, [np.array([-1.0, 0.0, 0.0, 2.0])])


def test_softplus_logaddexp_and_logsumexp_stay_finite_at_extreme_values() -> None:
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    check_op(ops.softplus, lambda a: torch.nn.functional.softplus(a, threshold=40.0), [x])
    check_op(ops.sigmoid, torch.sigmoid, [x], scale=_sigmoid_scale)
    check_op(lambda a: ops.logsumexp(a, axis=1), lambda a: torch.logsumexp(a, dim=1), [np.stack([x, -x])],
             scale=_lse_scale)  # fmt: skip
    a = Tensor(np.array([1e4, -1e4]), requires_grad=True)
    out = ops.logaddexp(a, 0.0)
    out.backward(np.ones(2))
    assert np.all(np.isfinite(out.data)) and np.all(np.isfinite(a.grad))  # type: ignore[arg-type]


# ---- broadcasting over every axis pattern ------------------------------------------------------

BINARY: dict[str, tuple[Callable[..., Any], Callable[..., Any], Any]] = {
    "add": (ADD, ADD, {"linear": ADD}),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, {"linear": ADD}),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, {"linear": lambda a, b: a * b}),
    "div": (lambda a, b: a / b, lambda a, b: a / b, {"linear": lambda a, b: a / b}),
    "logaddexp": (ops.logaddexp, torch.logaddexp, {"scale": _logaddexp_scale}),
}


@settings(max_examples=40)
@given(
    shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=1, max_side=3),
    op=st.sampled_from(list(BINARY)),
    seed=st.integers(0, 2**16),
)
def test_broadcasting_is_undone_in_the_backward_over_every_axis_pattern(shapes: Any, op: str, seed: int) -> None:
    """Leading axes added and size-1 axes stretched, on either side: each gradient summed back to its input."""
    ours, theirs, how = BINARY[op]
    xs = [_normal(*s, seed=seed + i, lo=0.5) for i, s in enumerate(shapes.input_shapes)]
    check_op(ours, theirs, xs, seed=seed, **how)


@settings(max_examples=30)
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3), seed=st.integers(0, 99))
def test_where_broadcasts_its_condition_and_both_branches(shapes: Any, seed: int) -> None:
    c_shape, a_shape, b_shape = shapes.input_shapes
    cond = np.random.default_rng(seed).random(c_shape) < 0.5
    xs = [_normal(*a_shape, seed=seed), _normal(*b_shape, seed=seed + 1)]
    fn = lambda a, b: ops.where(cond, a, b)  # noqa: E731
    ref = lambda a, b: torch.where(torch.tensor(cond), a, b)  # noqa: E731
    check_op(fn, ref, xs, linear=ref, seed=seed)


@settings(max_examples=50)
@given(shapes=mutually_broadcastable_shapes(num_shapes=1, min_dims=0, max_dims=5, max_side=3), seed=st.integers(0, 99))
def test_unbroadcast_equals_torch_sum_to_size(shapes: Any, seed: int) -> None:
    shape, full = shapes.input_shapes[0], shapes.result_shape
    extra = np.random.default_rng(seed).integers(0, 3, size=int(np.random.default_rng(seed).integers(0, 2)))
    full = tuple(int(n) + 1 for n in extra) + tuple(full)  # leading axes added as well
    g = _normal(*full, seed=seed)
    expected = torch.tensor(g).sum_to_size(shape).numpy() if shape else np.asarray(g.sum())
    _close("unbroadcast", unbroadcast(g, tuple(shape)), expected, 2 * tolerance(np.float64, g.size, np.abs(g).sum()))


# ---- reuse, ties, a graph run twice --------------------------------------------------------------


def reuse_cases() -> None:
    """x * x, x used in three places, and a weight in two layers: each against torch."""
    x = _normal(5, seed=3)
    check_op(lambda a: a * a, lambda a: a * a, [x], linear=lambda a: a * a)
    check_op(lambda a: a * a + ops.exp(a) - a / 3.0, lambda a: a * a + torch.exp(a) - a / 3.0, [x],
             scale=lambda xs, out, G, grads: (x * x + np.exp(x) + np.abs(x) / 3,
                                              [np.abs(G) * (2 * np.abs(x) + np.exp(x) + 1 / 3)]))  # fmt: skip
    X = _normal(6, 4, seed=4)
    check_op(lambda W, b: (X @ W + b) @ W * b, lambda W, b: (torch.tensor(X) @ W + b) @ W * b,
             [_normal(4, 4, seed=5), _normal(4, seed=6)],
             linear=lambda W, b: (torch.tensor(np.abs(X)) @ W + b) @ W * b)  # fmt: skip


def test_a_value_used_twice_gets_both_contributions() -> None:
    reuse_cases()
    x = Tensor(np.array([3.0]), requires_grad=True)
    (x * x).backward(np.array([1.0]))
    assert x.grad is not None and x.grad[0] == 6.0  # d(x^2)/dx = 2x, not x


def test_ties_in_amax_split_the_gradient_evenly_as_torch_amax() -> None:
    """torch.amax splits the gradient evenly among tied maxima; torch.max(dim) sends all of it to one index."""
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, 5.0, 1.0]])
    for axis, keep in ((1, False), (0, True), (None, False)):
        dims = tuple(range(2)) if axis is None else axis
        ours = functools.partial(ops.amax, axis=axis, keepdims=keep)
        check_op(ours, functools.partial(torch.amax, dim=dims, keepdim=keep), [x])
    a = Tensor(x, requires_grad=True)
    ops.amax(a, axis=1).backward(np.ones(3))
    np.testing.assert_array_equal(a.grad, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3], [0, 1, 0]])
    t = torch.tensor(x, requires_grad=True)
    torch.max(t, dim=1).values.backward(torch.ones(3))
    assert t.grad is not None and a.grad is not None
    assert not np.allclose(t.grad.numpy(), a.grad)  # torch.max(dim): the rule the engine does not follow
    assert np.all(t.grad.numpy().sum(axis=1) == 1) and np.all(np.isin(t.grad.numpy(), [0, 1]))


def test_a_second_backward_on_a_freed_graph_is_refused_and_retain_graph_accumulates_as_torch() -> None:
    x = _normal(3, seed=7)
    G = _normal(3, seed=8)
    a = Tensor(x, requires_grad=True)
    out = ops.tanh(a * 2.0)
    out.backward(G)
    first = a.grad.copy()  # type: ignore[union-attr]
    with pytest.raises(UsageError, match=r"backward: the graph through 'tanh' was freed by an earlier backward; "
                                         r"call the first one as backward\(retain_graph=True\)"):  # fmt: skip
        out.backward(G)
    np.testing.assert_array_equal(a.grad, first)  # the refused pass left nothing behind
    b = Tensor(x, requires_grad=True)
    out = ops.tanh(b * 2.0)
    out.backward(G, retain_graph=True)
    out.backward(G)
    t = torch.tensor(x, requires_grad=True)
    ref = torch.tanh(t * 2.0)
    ref.backward(torch.tensor(G), retain_graph=True)
    ref.backward(torch.tensor(G))
    assert t.grad is not None
    _close("two passes", b.grad, t.grad.numpy(), 4 * tolerance(np.float64, 3, np.abs(t.grad.numpy())) + TINY)
    np.testing.assert_allclose(b.grad, 2 * first, rtol=1e-15)  # type: ignore[arg-type]


def test_a_leaf_accumulates_over_two_graphs_as_torch() -> None:
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (a * 3.0).backward(np.ones(2))
    (a * a).backward(np.ones(2))
    np.testing.assert_array_equal(a.grad, [3.0 + 2.0, 3.0 + 4.0])


# ---- integers, no_grad, dtypes ---------------------------------------------------------------------


def test_integer_inputs_are_data_that_never_require_grad() -> None:
    labels = Tensor(np.array([2, 0, 1]))
    assert labels.dtype == np.int64 and not labels.requires_grad
    Z = Tensor(_normal(3, 3, seed=1), requires_grad=True)
    picked = Z[np.arange(3), labels]  # an integer Tensor as an index
    scaled = picked * labels  # an integer Tensor as a constant factor
    assert scaled.dtype == np.float64
    scaled.backward(np.ones(3))
    expected = np.zeros((3, 3))
    expected[np.arange(3), [2, 0, 1]] = [2, 0, 1]
    np.testing.assert_array_equal(Z.grad, expected)
    f32 = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    assert (f32 * labels).dtype == np.float32 and (f32 * 2.0).dtype == np.float32  # as torch: no promotion
    assert (f32 * np.float64(2.0)).dtype == np.float32 and (f32 + np.ones(3)).dtype == np.float64


def test_no_grad_records_nothing() -> None:
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with no_grad():
        out = ops.exp(a * a).sum()
    assert not out.requires_grad and out.op == "leaf" and out.parents == ()
    with pytest.raises(UsageError, match="backward: this tensor does not require grad"):
        out.backward()
    assert (a * a).requires_grad  # on again after the block


def test_float32_gradients_stay_float32() -> None:
    a = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    b = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    ops.logsumexp(a @ b.reshape(3, 1) + b, axis=1).mean().backward()
    assert a.grad is not None and b.grad is not None
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float32


# ---- the recorded graph -----------------------------------------------------------------------------


def test_graph_lists_every_node_in_backward_order_with_its_local_derivative() -> None:
    W = Tensor(_normal(3, 2, seed=1), requires_grad=True, name="W")
    X = _normal(4, 3, seed=2)
    Z = tap("Z", X @ W)
    loss = ops.mean(ops.tanh(Z))
    nodes = graph(loss)
    assert [(n.op, n.shape) for n in nodes] == [("mean", ()), ("tanh", (4, 2)), ("matmul", (4, 2)), ("leaf", (3, 2))]
    assert [n.name for n in nodes] == [None, None, "Z", "W"]
    assert nodes[1].deriv == "d/da = 1 - tanh(a)^2" and nodes[2].deriv == "d/da = g @ b^T ; d/db = a^T @ g"
    position = {id(n): i for i, n in enumerate(nodes)}
    assert all(position[id(p)] > position[id(n)] for n in nodes for p in n.parents if p.requires_grad)
    loss.backward()
    assert Z.grad is not None and Z.grad.shape == (4, 2)  # a tapped intermediate keeps dL/dZ
    np.testing.assert_allclose(Z.grad, (1 - np.tanh(X @ W.data) ** 2) / 8, rtol=1e-14)
    assert [n.op for n in graph(loss)] == ["mean", "tanh", "matmul", "leaf"]  # still listed after the pass


def test_a_deep_graph_needs_no_recursion() -> None:
    a = Tensor(np.array(1.0), requires_grad=True)
    out = a
    for _ in range(5000):
        out = out * 1.0001
    out.backward()
    assert a.grad is not None and a.grad == pytest.approx(1.0001**5000, rel=1e-10)


# ---- bad input ----------------------------------------------------------------------------------------

_A = Tensor(np.ones(3), requires_grad=True)
BAD: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("torch tensor", lambda: _A + torch.ones(3), TypeError,
     r"^add: expected an engine Tensor, a NumPy array or a Python number; got torch.Tensor$"),
    ("torch on the right", lambda: _A * torch.ones(3), TypeError, r"^mul: expected .* got torch.Tensor$"),
    ("torch on the left", lambda: torch.ones(3) @ _A, TypeError, r"^matmul: expected .* got torch.Tensor$"),
    ("list on the left", lambda: [1.0, 2.0, 3.0] + _A, TypeError, r"^add: expected .* got list$"),  # noqa: RUF005
    ("list", lambda: _A - [1.0, 2.0, 3.0], TypeError, r"^sub: expected .* got list$"),
    ("list to exp", lambda: ops.exp([1.0]), TypeError, r"^exp: expected .* got list$"),
    ("strings", lambda: _A + np.array(["a", "b", "c"]), TypeError, r"^add: a constant must hold real numbers; got"),
    ("no broadcast", lambda: _A + np.ones(4), UsageError,
     r"^add: shapes \(3,\) and \(4,\) do not broadcast \(each axis, from the right, must be equal or 1\)$"),
    ("matmul", lambda: Tensor(np.ones((2, 3))) @ _A.reshape(1, 3), UsageError,
     r"^matmul: shapes \(2, 3\) and \(1, 3\) do not line up: a's last axis \(3\) must equal b's second-to-last"),
    ("matmul scalar", lambda: _A @ 2.0, UsageError, r"^matmul: both operands need at least 1 axis"),
    ("non-scalar backward", lambda: (_A * 2.0).backward(), UsageError,
     r"^backward: an output of shape \(3,\) needs an upstream gradient grad= of that shape .*; got none$"),
    ("grad shape", lambda: (_A * 2.0).backward(np.ones(4)), UsageError,
     r"^backward: grad must have the output's shape \(3,\); got shape \(4,\)$"),
    ("grad list", lambda: (_A * 2.0).backward([1.0, 1.0, 1.0]), TypeError,
     r"^backward: grad must be a NumPy array or a Tensor; got list$"),
    ("int requires grad", lambda: Tensor(np.arange(3), requires_grad=True), UsageError,
     r"^Tensor: requires_grad needs float32 or float64; got int64$"),
    ("float16 requires grad", lambda: Tensor(np.ones(2, np.float16), requires_grad=True), UsageError,
     r"^Tensor: requires_grad needs float32 or float64; got float16$"),
    ("complex", lambda: Tensor(np.ones(2, np.complex128)), UsageError,
     r"^Tensor: data must be float32 or float64 \(or integers, booleans\); got complex128$"),
    ("Tensor of a list", lambda: Tensor([1.0, 2.0]), TypeError,
     r"^Tensor takes a NumPy array or a Python number; got list$"),
    ("Tensor of torch", lambda: Tensor(torch.ones(2)), TypeError, r"^Tensor takes .* got Tensor$"),
    ("pow tensor", lambda: _A ** Tensor(np.array(2.0)), TypeError,
     r"^pow: the exponent must be a Python number; got Tensor$"),
    ("reshape", lambda: _A.reshape(2, 2), UsageError,
     r"^reshape: cannot reshape shape \(3,\) \(3 elements\) into \(2, 2\)$"),
    ("axis", lambda: ops.sum(_A, axis=1), UsageError, r"^sum: axis must be None or ints in \[-1, 0\]; got 1$"),
    ("transpose", lambda: ops.transpose(_A, (1, 0)), UsageError, r"^transpose: axes must be a permutation of 0..0"),
    ("float index", lambda: _A[Tensor(np.array([0.5]))], TypeError, r"^index: an index tensor must hold integers"),
    ("index range", lambda: _A[np.array([5])], IndexError, r"^index: .*out of bounds.*\(indexing a tensor of shape"),
    ("where condition", lambda: ops.where(np.ones(3), _A, 0.0), TypeError, r"^where: the condition must be boolean"),
    ("astype", lambda: _A.astype(np.int64), UsageError, r"^astype: a tensor that requires grad can become float32"),
    ("tap", lambda: tap("Z", cast(Any, np.ones(2))), TypeError,
     r"^tap\('Z', \.\.\.\) takes an engine Tensor; got ndarray$"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_gets_one_clear_error_naming_the_op(
    case: tuple[str, Callable[[], Any], type[Exception], str],
) -> None:
    _, call, kind, message = case
    with pytest.raises(kind, match=message) as info:
        call()
    assert "\n" not in str(info.value)


# ---- planted bugs: a checker that cannot fail proves nothing -------------------------------------------


def planted(fn: Callable[..., Any], old: str, new: str) -> Callable[..., Any]:
    """A copy of engine function or method `fn` with `old` (which must occur once) replaced by `new` in its source."""
    source = textwrap.dedent(inspect.getsource(fn))
    assert source.count(old) == 1, f"{old!r} occurs {source.count(old)} times in {fn.__qualname__}"
    namespace = dict(fn.__globals__)
    exec(compile(source.replace(old, new), fn.__code__.co_filename, "exec"), namespace)
    return namespace[fn.__name__]


def test_planted_overwrite_instead_of_accumulate_fails_the_reuse_test(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = planted(Tensor.backward, "grads[parent] + g_parent if parent in grads else g_parent", "g_parent")
    monkeypatch.setattr(Tensor, "backward", wrong)
    with pytest.raises(AssertionError, match="gradient of input 0"):
        reuse_cases()


def test_planted_unbroadcast_that_forgets_size_one_axes_fails_the_broadcasting_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = planted(unbroadcast, "return grad.sum(axis=tuple(range(extra)) + stretched).reshape(shape)",
                    "return grad.sum(axis=tuple(range(extra)))")  # fmt: skip
    monkeypatch.setattr(tensor_module, "unbroadcast", wrong)  # mul's, in tensor.py
    check_op(lambda a, b: a * b, lambda a, b: a * b, [_normal(4, 3), _normal(3)], linear=lambda a, b: a * b)  # no 1s
    with pytest.raises(AssertionError, match=r"gradient of input 1 \(3, 1\): shape \(3, 4\), torch \(3, 1\)"):
        check_op(lambda a, b: a * b, lambda a, b: a * b, [_normal(3, 4), _normal(3, 1)], linear=lambda a, b: a * b)


def test_planted_wrong_local_derivative_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = planted(tensor_module.mul, "unbroadcast(g * b.data, a.shape)", "unbroadcast(g * a.data, a.shape)")
    monkeypatch.setattr(tensor_module, "mul", wrong)  # what Tensor.__mul__ calls
    with pytest.raises(AssertionError, match="gradient of input 0"):
        check_op(lambda a, b: a * b, lambda a, b: a * b, [_normal(2, 3, seed=1), _normal(2, 3, seed=2)],
                 linear=lambda a, b: a * b)  # fmt: skip


def test_planted_max_that_gives_every_tie_the_whole_gradient_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops, "amax", planted(ops.amax, "hits / np.sum(hits, axis=axes, keepdims=True)", "hits * 1.0"))
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    with pytest.raises(AssertionError, match="gradient of input 0"):
        check_op(lambda a: ops.amax(a, axis=1), lambda a: torch.amax(a, dim=1), [x])


def test_planted_softplus_with_the_wrong_sign_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        ops, "softplus", planted(ops.softplus, "np.where(a.data >= 0, 1, e)", "np.where(a.data >= 0, e, 1)")
    )
    with pytest.raises(AssertionError, match="gradient of input 0"):
        check_op(ops.softplus, lambda a: torch.nn.functional.softplus(a, threshold=40.0), [_normal(5)])


def test_the_engine_is_small() -> None:
    """The core (tensor + ops) stays readable in one sitting."""
    lines = sum(len(inspect.getsource(m).splitlines()) for m in (tensor_module, ops))
    assert lines <= 750, f"the engine has grown to {lines} lines"
