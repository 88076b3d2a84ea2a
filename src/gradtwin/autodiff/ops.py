"""The functions of tensors: exp, log, tanh, relu, sigmoid, softplus, logaddexp, logsumexp, amax, max, where, take, pad.

Each computes its value with NumPy and, beside it, the closure `back(g)` that applies its local
derivative (see `tensor.py`); the ops written as the Tensor's operators (add ... index) live there
and are named here too, so that `ops.` reaches every op.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradtwin.autodiff.tensor import (
    Tensor,
    add,
    astype,
    axes_of,
    broadcast,
    compare,
    div,
    index,
    kept,
    lift,
    make,
    matmul,
    mean,
    mul,
    neg,
    operands,
    pow,
    reshape,
    sub,
    sum,
    transpose,
    unbroadcast,
)
from gradtwin.errors import UsageError

__all__ = [
    "add", "amax", "astype", "compare", "div", "exp", "index", "log", "logaddexp", "logsumexp", "matmul", "max",
    "mean", "mul", "neg", "pad", "pow", "relu", "reshape", "sigmoid", "softplus", "sub", "sum", "take", "tanh",
    "transpose", "where",
]  # fmt: skip


def take(a: Any, indices: Any, axis: int = 0) -> Tensor:
    """np.take(a, indices, axis): rows (axis 0) or slices along `axis`; repeated indices add their gradients."""
    a = lift("take", a)
    ax = axes_of("take", axis, a.ndim)[0]
    return index(a, (slice(None),) * ax + (indices,), op="take")


def pad(a: Any, widths: Any) -> Tensor:
    """a inside a border of zeros, as np.pad: widths holds one (before, after) pair of ints >= 0 per axis."""
    a = lift("pad", a)
    nested = isinstance(widths, (tuple, list)) and all(isinstance(p, (tuple, list)) for p in widths)
    pairs = tuple(tuple(p) for p in widths) if nested else ()
    if len(pairs) != a.ndim or not all(len(p) == 2 and all(isinstance(k, int) and k >= 0 for k in p) for p in pairs):
        raise UsageError(f"pad: widths must be one (before, after) pair of ints >= 0 per axis ({a.ndim}); got {widths}")
    inside = tuple(slice(before, before + n) for (before, _), n in zip(pairs, a.shape, strict=True))
    back = lambda g: (g[inside],)  # noqa: E731  d/da = 1 inside, the border's gradient dropped   (a's shape)
    return make("pad", np.pad(a.data, pairs), (a,), back, "d/da = 1 inside the border")


# ---- elementwise functions -----------------------------------------------------------------------
def exp(a: Any) -> Tensor:
    a = lift("exp", a)
    out = np.exp(a.data)
    return make("exp", out, (a,), lambda g: (g * out,), "d/da = exp(a)")  # (a's shape)


def log(a: Any) -> Tensor:
    a = lift("log", a)
    return make("log", np.log(a.data), (a,), lambda g: (g / a.data,), "d/da = 1/a")  # (a's shape)


def tanh(a: Any) -> Tensor:
    a = lift("tanh", a)
    out = np.tanh(a.data)
    return make("tanh", out, (a,), lambda g: (g * (1 - out * out),), "d/da = 1 - tanh(a)^2")  # (a's shape)


def relu(a: Any) -> Tensor:
    a = lift("relu", a)
    # 0 at a = 0, as torch: the subgradient that keeps a dead unit dead
    return make("relu", np.maximum(a.data, 0), (a,), lambda g: (g * (a.data > 0),), "d/da = 1 if a > 0 else 0")


def _sigmoid(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sigma(x) through e = exp(-|x|) <= 1, so nothing overflows; and e itself."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e), e


def sigmoid(a: Any) -> Tensor:
    a = lift("sigmoid", a)
    out = _sigmoid(a.data)[0]
    return make("sigmoid", out, (a,), lambda g: (g * out * (1 - out),), "d/da = s (1 - s)")  # (a's shape)


def softplus(a: Any) -> Tensor:
    """log(1 + e^a) as max(a, 0) + log1p(e^-|a|): finite for any a, accurate where a is large or small."""
    a = lift("softplus", a)
    e = np.exp(-np.abs(a.data))  # (a's shape) in (0, 1]
    out = np.maximum(a.data, 0) + np.log1p(e)

    def back(g: np.ndarray) -> tuple[Any]:
        return (g * (np.where(a.data >= 0, 1, e) / (1 + e)),)  # d/da = sigmoid(a), from the same e  (a's shape)

    return make("softplus", out, (a,), back, "d/da = sigmoid(a)")


def logaddexp(a: Any, b: Any) -> Tensor:
    """log(e^a + e^b) (np.logaddexp: stable); its derivatives e^(a - out) <= 1 never overflow."""
    a, b = operands("logaddexp", a, b)
    out = broadcast("logaddexp", np.logaddexp, a, b)

    def back(g: np.ndarray) -> tuple[Any, Any]:
        return (
            unbroadcast(g * np.exp(a.data - out), a.shape) if a.requires_grad else None,  # d/da = e^a / (e^a + e^b)
            unbroadcast(g * np.exp(b.data - out), b.shape) if b.requires_grad else None,  # d/db = e^b / (e^a + e^b)
        )

    return make("logaddexp", out, (a, b), back, "d/da = e^(a - out) ; d/db = e^(b - out)")


def logsumexp(a: Any, axis: Any = -1, keepdims: bool = False) -> Tensor:
    """log sum_j e^(a_j) over `axis`, the largest element subtracted first so no e^ overflows."""
    a = lift("logsumexp", a)
    axes = axes_of("logsumexp", axis, a.ndim)
    m = np.max(a.data, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # a row of -inf stays -inf, not nan
    e = np.exp(a.data - m)  # (a's shape) in [0, 1]
    s = np.sum(e, axis=axes, keepdims=True)  # (reduced axes kept)
    out = np.log(s) + m

    def back(g: np.ndarray) -> tuple[Any]:
        return (kept(g, a.shape, axes) * (e / s),)  # d/da_j = softmax(a)_j   (a's shape)

    return make("logsumexp", out if keepdims else np.squeeze(out, axes), (a,), back, "d/da = softmax(a)")


def amax(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    """The largest element over `axis`, as torch.amax: the gradient is split evenly among tied maxima.

    (`max`, as torch.max(a, dim), differs: it sends the whole gradient to the one index it returns.)
    """
    a = lift("amax", a)
    axes = axes_of("amax", axis, a.ndim)
    out = np.max(a.data, axis=axes, keepdims=True)
    hits = a.data == out  # (a's shape) True at every tied maximum

    def back(g: np.ndarray) -> tuple[Any]:
        share = hits / np.sum(hits, axis=axes, keepdims=True)  # (a's shape) 1/ties at each maximum, else 0
        return (kept(g, a.shape, axes) * share.astype(a.dtype),)  # d/da = 1/ties at a maximum

    return make("amax", out if keepdims else np.squeeze(out, axes), (a,), back, "d/da = 1/ties at the maxima")


def max(a: Any, axis: int = -1, keepdims: bool = False) -> Tensor:
    """The largest element along one axis, as the values of torch.max(a, dim): the whole gradient goes to the
    ONE index np.argmax returns, the first maximum (a NaN is the maximum and propagates, as in torch)."""
    a = lift("max", a)
    if not isinstance(axis, (int, np.integer)):
        raise UsageError(f"max: axis must be one int (amax takes several); got {axis!r}")
    ax = axes_of("max", axis, a.ndim)[0]
    if a.shape[ax] == 0:
        raise UsageError(f"max: axis {axis} must hold at least one element; got shape {a.shape}")
    first = np.expand_dims(np.argmax(a.data, axis=ax), ax)  # (a's shape, 1 along axis) where each maximum is
    out = np.take_along_axis(a.data, first, axis=ax)  # (a's shape, 1 along axis)

    def back(g: np.ndarray) -> tuple[Any]:
        grad = np.zeros_like(a.data)  # (a's shape) 0 off the first maximum, tied elements included
        np.put_along_axis(grad, first, kept(g, a.shape, (ax,)), axis=ax)  # d/da = 1 at the first maximum
        return (grad,)

    return make("max", out if keepdims else np.squeeze(out, ax), (a,), back, "d/da = 1 at the first maximum, else 0")


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """a where condition holds, else b (all three broadcast); the condition has no gradient."""
    c = lift("where", condition).data
    if c.dtype.kind != "b":
        raise TypeError(f"where: the condition must be boolean; got {c.dtype}")
    a, b = operands("where", a, b)
    try:
        out = np.where(c, a.data, b.data)
    except ValueError:
        raise UsageError(f"where: shapes {c.shape}, {a.shape} and {b.shape} do not broadcast") from None

    def back(g: np.ndarray) -> tuple[Any, Any]:
        return (
            unbroadcast(np.where(c, g, 0), a.shape) if a.requires_grad else None,  # d/da = 1 where c   (a's shape)
            unbroadcast(np.where(c, 0, g), b.shape) if b.requires_grad else None,  # d/db = 1 elsewhere (b's shape)
        )

    return make("where", out, (a, b), back, "d/da = 1 where c ; d/db = 1 where not c")
