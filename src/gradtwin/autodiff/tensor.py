"""The engine's Tensor, its reverse-mode pass, and the ops written as its operators (+ - * / @ ** [] sum ...).

Each op computes its value with NumPy and keeps a closure `back(g) -> (dL/dinput, ...)` holding its
local derivatives, written beside the forward: g = dL/d(out) of out's shape comes in, dL/d(input)
of each input's shape goes out (None where the input needs none); what broadcasting stretched,
`unbroadcast` sums back. Python numbers and NumPy arrays are constants; dtypes follow torch (a
number, a 0-d constant or an integer operand takes the float dtype of the other side). The
functions of tensors (exp ... where) are in `ops.py`. `Tensor.backward` orders the graph
topologically (an iterative depth-first search: no recursion limit), then walks it from the output
back, handing each node the sum of what its children sent it: a value used twice gets both
contributions. Leaves (and nodes named by `tap`) keep their gradient in `.grad`.

A backward pass frees the graph it ran through (its closures and the arrays they saved, as
torch does); a second backward through it raises, unless the first was `backward(retain_graph=True)`,
in which case the leaves' `.grad` accumulate, as torch's retain_graph does.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from gradtwin.errors import UsageError

Backward = Callable[[np.ndarray], Sequence[Any]]
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_GRAD_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("gradtwin_autodiff_grad", default=True)


class Tensor:
    """An array in the graph.   data: np.ndarray; grad: np.ndarray | None (dL/d(this), after backward).

    op, parents, deriv: the op that made it, its inputs, and its local derivative as text ("leaf" for
    an input). Only float32 and float64 tensors can require grad; integer tensors are data (indices, labels).
    """

    __slots__ = ("_backward", "data", "deriv", "grad", "name", "op", "parents", "requires_grad")
    __array_ufunc__ = None  # NumPy arrays and scalars defer to the Tensor's reflected operators (a + t)
    data: np.ndarray
    parents: tuple[Tensor, ...]

    def __init__(self, data: Any, requires_grad: bool = False, name: str | None = None) -> None:
        if isinstance(data, Tensor):
            data = data.data
        if not isinstance(data, (np.ndarray, np.generic, int, float)):
            raise TypeError(f"Tensor takes a NumPy array or a Python number; got {type(data).__name__}")
        self.data = np.asarray(data)
        if self.data.dtype.kind not in "fiub" or (requires_grad and self.data.dtype not in FLOATS):
            raise UsageError(
                f"Tensor: {'requires_grad needs' if requires_grad else 'data must be'} float32 or float64"
                f"{'' if requires_grad else ' (or integers, booleans)'}; got {self.data.dtype}"
            )
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self.op, self.deriv, self.name = "leaf", "", name
        self.parents = ()
        self._backward: Backward | None = None

    # ---- what it is -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return int(self.data.ndim)

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def T(self) -> Tensor:
        return transpose(self)

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        label = f", name={self.name!r}" if self.name else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, op={self.op!r}{label})"

    # ---- operators: Python numbers and NumPy arrays are constants --------------------------------
    def __add__(self, other: Any) -> Tensor:
        return add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return div(other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return matmul(other, self)

    def __pow__(self, exponent: Any) -> Tensor:
        return pow(self, exponent)

    def __neg__(self) -> Tensor:
        return neg(self)

    def __getitem__(self, key: Any) -> Tensor:
        return index(self, key)

    def __gt__(self, other: Any) -> Tensor:
        return compare("gt", self, other)

    def __ge__(self, other: Any) -> Tensor:
        return compare("ge", self, other)

    def __lt__(self, other: Any) -> Tensor:
        return compare("lt", self, other)

    def __le__(self, other: Any) -> Tensor:
        return compare("le", self, other)

    __hash__ = object.__hash__  # identity: a Tensor is a graph node, not a value

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return sum(self, axis, keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        return mean(self, axis, keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        return reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)

    def astype(self, dtype: Any) -> Tensor:
        return astype(self, dtype)

    # ---- reverse mode ---------------------------------------------------------------------------
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate dL/d(leaf) into every leaf's `.grad`, L this tensor (a scalar, or any shape with `grad`).

        grad: the upstream gradient dL/d(this), of this tensor's shape; needed unless it has one element.
        retain_graph: keep the closures so that another backward can run through the same graph.
        """
        if not self.requires_grad:
            raise UsageError("backward: this tensor does not require grad (no input of it has requires_grad=True)")
        if grad is None:
            if self.size != 1:
                raise UsageError(
                    f"backward: an output of shape {self.shape} needs an upstream gradient grad= of that shape "
                    "(only a one-element output has the implicit dL/dL = 1); got none"
                )
            grad = np.ones_like(self.data)
        grad = _upstream(grad, self)
        order = topological(self)  # inputs first, this tensor last
        for node in reversed(order):  # the freed node nearest this output is the one to name
            if node.parents and node._backward is None:
                raise UsageError(
                    f"backward: the graph through {node.op!r} was freed by an earlier backward; "
                    "call the first one as backward(retain_graph=True) to run backward twice"
                )
        grads: dict[Tensor, np.ndarray] = {self: grad}  # node -> dL/d(node), summed over its children
        for node in reversed(order):
            g = grads.pop(node, None)
            if g is None:  # nothing downstream reached this node
                continue
            if not node.parents:  # a leaf: an own copy, as a caller may update .grad in place
                g_own = np.array(g, dtype=node.data.dtype)
                node.grad = g_own if node.grad is None else node.grad + g_own
            elif node.name is not None:  # a tapped intermediate keeps dL/d(node) to be read
                node.grad = g if node.grad is None else node.grad + g
            if node._backward is None:
                continue
            for parent, g_parent in zip(node.parents, node._backward(g), strict=True):
                if g_parent is not None and parent.requires_grad:
                    # a value used twice (x * x, a weight in two places) gets the sum of both contributions
                    grads[parent] = grads[parent] + g_parent if parent in grads else g_parent
            if not retain_graph:
                node._backward = None


def _upstream(grad: Any, out: Tensor) -> np.ndarray:
    """The upstream gradient as an array of `out`'s shape and dtype, or a one-line error."""
    if isinstance(grad, Tensor):
        grad = grad.data
    if not isinstance(grad, (np.ndarray, np.generic, int, float)):
        raise TypeError(f"backward: grad must be a NumPy array or a Tensor; got {type(grad).__name__}")
    g = np.asarray(grad)
    if g.shape != out.shape:
        raise UsageError(f"backward: grad must have the output's shape {out.shape}; got shape {g.shape}")
    return g.astype(out.dtype, copy=False)


def topological(root: Tensor) -> list[Tensor]:
    """Every node `root` depends on through tensors that require grad, each after all of its parents."""
    order: list[Tensor] = []
    seen: set[Tensor] = set()  # by identity (Tensor.__hash__)
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:  # all its parents are in `order` already
            order.append(node)
        elif node not in seen:
            seen.add(node)
            stack.append((node, True))
            stack.extend([(p, False) for p in node.parents if p.requires_grad and p not in seen])
    return order


def graph(loss: Tensor) -> list[Tensor]:
    """The recorded graph in backward order: `loss` first, every node before its parents.

    Each node has .op, .shape, .parents, .deriv (the local derivative as text), .name (its tap).
    """
    return list(reversed(topological(loss)))


def tap(name: str, tensor: Tensor) -> Tensor:
    """Name an intermediate (as gradtwin.steps.tap does for torch): `graph` shows it, backward keeps its .grad."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"tap({name!r}, ...) takes an engine Tensor; got {type(tensor).__name__}")
    tensor.name = name
    return tensor


def grad_enabled() -> bool:
    return _GRAD_ENABLED.get()


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Inside the block ops record nothing: their results are constants (requires_grad False)."""
    token = _GRAD_ENABLED.set(False)
    try:
        yield
    finally:
        _GRAD_ENABLED.reset(token)


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo broadcasting: sum `grad` over the axes that broadcasting added or stretched from size 1.

    An input of shape (3, 1) broadcast to (2, 3, 4) received every element 2*4 times, so its
    gradient is the sum over axis 0 (added) and axis 2 (stretched), kept as (3, 1).
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    stretched = tuple(extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    return grad.sum(axis=tuple(range(extra)) + stretched).reshape(shape)


_CONSTANTS = (np.ndarray, np.generic, int, float)


# ---- plumbing ------------------------------------------------------------------------------------
def lift(op: str, x: Any) -> Tensor:
    """x as a Tensor: a Tensor itself, a NumPy array or Python number as a constant, else a one-line error."""
    if isinstance(x, Tensor):
        return x
    if not isinstance(x, _CONSTANTS):
        kind = (
            type(x).__module__.split(".")[0] + "." + type(x).__name__
            if type(x).__module__ != "builtins"
            else type(x).__name__
        )
        raise TypeError(f"{op}: expected an engine Tensor, a NumPy array or a Python number; got {kind}")
    data = np.asarray(x)
    if data.dtype.kind not in "fiub":
        raise TypeError(f"{op}: a constant must hold real numbers; got dtype {data.dtype}")
    return Tensor(data)


def operands(op: str, a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Both operands as Tensors, a weak constant (number, 0-d, integer) cast to the other's float dtype."""
    ta, tb = lift(op, a), lift(op, b)
    da, db = ta.data.dtype, tb.data.dtype
    if da != db:
        if db.kind == "f" and (da.kind in "iub" or (not isinstance(a, Tensor) and ta.data.ndim == 0)):
            ta = Tensor(ta.data.astype(db))
        elif da.kind == "f" and (db.kind in "iub" or (not isinstance(b, Tensor) and tb.data.ndim == 0)):
            tb = Tensor(tb.data.astype(da))
    return ta, tb


def make(op: str, data: Any, parents: tuple[Tensor, ...], back: Backward, deriv: str) -> Tensor:
    """The op's result; a graph node (parents, closure, text) when grad is on and an input requires grad."""
    out = Tensor.__new__(Tensor)  # the data come from NumPy ops on checked inputs: no checks again
    out.data, out.grad, out.name, out.requires_grad = np.asarray(data), None, None, False
    out.op, out.parents, out._backward, out.deriv = "leaf", (), None, ""
    if _GRAD_ENABLED.get():
        for p in parents:
            if p.requires_grad:
                out.requires_grad, out.op, out.parents, out._backward, out.deriv = True, op, parents, back, deriv
                break
    return out


def broadcast(op: str, fn: Callable[[Any, Any], Any], a: Tensor, b: Tensor) -> Any:
    """fn(a, b) on the arrays, or a one-line error naming the op where their shapes do not broadcast."""
    try:
        return fn(a.data, b.data)
    except ValueError:
        raise UsageError(
            f"{op}: shapes {a.shape} and {b.shape} do not broadcast (each axis, from the right, must be equal or 1)"
        ) from None


def axes_of(op: str, axis: Any, ndim: int) -> tuple[int, ...]:
    """axis (None, an int or a tuple of ints) as sorted non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if not all(isinstance(ax, (int, np.integer)) and -ndim <= ax < ndim for ax in axes):
        raise UsageError(f"{op}: axis must be None or ints in [{-ndim}, {ndim - 1}]; got {axis!r}")
    return tuple(sorted(int(ax) % ndim for ax in axes))


def kept(g: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    """g of a reduction of an input of `shape` over `axes`, with those axes back as size 1 (keepdims)."""
    return np.reshape(g, tuple(1 if i in axes else n for i, n in enumerate(shape)))


def spread(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """g broadcast to `shape`, as a fresh array (what a sum sends to each of its terms)."""
    out = np.empty(shape, dtype=g.dtype)
    out[...] = g
    return out


# ---- arithmetic ----------------------------------------------------------------------------------
def add(a: Any, b: Any) -> Tensor:
    a, b = operands("add", a, b)

    def back(g: np.ndarray) -> tuple[Any, Any]:
        return (
            unbroadcast(g, a.shape) if a.requires_grad else None,  # d/da = 1          (a's shape)
            unbroadcast(g, b.shape) if b.requires_grad else None,  # d/db = 1          (b's shape)
        )

    return make("add", broadcast("add", np.add, a, b), (a, b), back, "d/da = 1 ; d/db = 1")


def sub(a: Any, b: Any) -> Tensor:
    a, b = operands("sub", a, b)

    def back(g: np.ndarray) -> tuple[Any, Any]:
        return (
            unbroadcast(g, a.shape) if a.requires_grad else None,  # d/da = 1          (a's shape)
            unbroadcast(-g, b.shape) if b.requires_grad else None,  # d/db = -1        (b's shape)
        )

    return make("sub", broadcast("sub", np.subtract, a, b), (a, b), back, "d/da = 1 ; d/db = -1")


def mul(a: Any, b: Any) -> Tensor:
    a, b = operands("mul", a, b)

    def back(g: np.ndarray) -> tuple[Any, Any]:
        return (
            unbroadcast(g * b.data, a.shape) if a.requires_grad else None,  # d/da = b   (a's shape)
            unbroadcast(g * a.data, b.shape) if b.requires_grad else None,  # d/db = a   (b's shape)
        )

    return make("mul", broadcast("mul", np.multiply, a, b), (a, b), back, "d/da = b ; d/db = a")


def div(a: Any, b: Any) -> Tensor:
    a, b = operands("div", a, b)
    out = broadcast("div", np.divide, a, b)

    def back(g: np.ndarray) -> tuple[Any, Any]:
        return (
            unbroadcast(g / b.data, a.shape) if a.requires_grad else None,  # d/da = 1/b          (a's shape)
            unbroadcast(-g * out / b.data, b.shape) if b.requires_grad else None,  # d/db = -a/b^2 (b's shape)
        )

    return make("div", out, (a, b), back, "d/da = 1/b ; d/db = -a/b^2")


def neg(a: Any) -> Tensor:
    a = lift("neg", a)
    return make("neg", -a.data, (a,), lambda g: (-g,), "d/da = -1")  # (a's shape)


def pow(a: Any, exponent: Any) -> Tensor:
    """a ** p for a Python number p (a tensor exponent is not supported)."""
    a = lift("pow", a)
    if not isinstance(exponent, (int, float)) or isinstance(exponent, bool):
        raise TypeError(f"pow: the exponent must be a Python number; got {type(exponent).__name__}")
    p = exponent

    def back(g: np.ndarray) -> tuple[Any]:
        return ((p * g) * (a.data if p == 2 else a.data ** (p - 1)),)  # d/da = p a^(p-1)    (a's shape)

    return make("pow", a.data**p, (a,), back, f"d/da = {p} * a^{p - 1}")


def matmul(a: Any, b: Any) -> Tensor:
    """a @ b for 1-D and 2-D operands and stacks of matrices (leading axes broadcast), as np.matmul.

    A vector a is one row (1, k), a vector b one column (k, 1); their axes are dropped from the result.
    """
    a, b = operands("matmul", a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise UsageError(
            f"matmul: both operands need at least 1 axis (use mul for a scalar); got {a.shape} @ {b.shape}"
        )
    try:
        out = np.matmul(a.data, b.data)
    except ValueError:
        other = "first" if b.ndim == 1 else "second-to-last"
        raise UsageError(
            f"matmul: shapes {a.shape} and {b.shape} do not line up: a's last axis ({a.shape[-1]}) must equal "
            f"b's {other} axis ({b.shape[0] if b.ndim == 1 else b.shape[-2]}) and the leading axes broadcast"
        ) from None
    A = a.data if a.ndim > 1 else a.data[None, :]  # (..., n, k)
    B = b.data if b.ndim > 1 else b.data[:, None]  # (..., k, m)

    def back(g: np.ndarray) -> tuple[Any, Any]:
        G = g if b.ndim > 1 else g[..., None]  # (..., n, m): the dropped axes back
        G = G if a.ndim > 1 else G[..., None, :]
        return (
            unbroadcast(G @ B.swapaxes(-1, -2), A.shape).reshape(a.shape) if a.requires_grad else None,  # g b^T
            unbroadcast(A.swapaxes(-1, -2) @ G, B.shape).reshape(b.shape) if b.requires_grad else None,  # a^T g
        )

    return make("matmul", out, (a, b), back, "d/da = g @ b^T ; d/db = a^T @ g")


def astype(a: Any, dtype: Any) -> Tensor:
    """a in another dtype; the gradient is cast back (float to float only when a requires grad)."""
    a = lift("astype", a)
    to = np.dtype(dtype)
    if a.requires_grad and to not in FLOATS:
        raise UsageError(f"astype: a tensor that requires grad can become float32 or float64; got {to}")
    return make("astype", a.data.astype(to), (a,), lambda g: (g.astype(a.dtype),), "d/da = 1")  # (a's shape)


def compare(kind: str, a: Any, b: Any) -> Tensor:
    """a > b, a >= b, a < b, a <= b as a boolean constant: comparisons have no gradient."""
    a, b = operands(kind, a, b)
    fn = {"gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal}[kind]
    return Tensor(broadcast(kind, fn, a, b))


# ---- reductions and shapes -----------------------------------------------------------------------
def sum(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    a = lift("sum", a)
    axes = axes_of("sum", axis, a.ndim)

    def back(g: np.ndarray) -> tuple[Any]:
        return (spread(kept(g, a.shape, axes), a.shape),)  # d/da_i = 1: g to every summed element  (a's shape)

    return make("sum", a.data.sum(axis=axes, keepdims=keepdims), (a,), back, "d/da_i = 1")


def mean(a: Any, axis: Any = None, keepdims: bool = False) -> Tensor:
    a = lift("mean", a)
    axes = axes_of("mean", axis, a.ndim)
    count = math.prod(a.shape[ax] for ax in axes)

    def back(g: np.ndarray) -> tuple[Any]:
        return (spread(kept(g, a.shape, axes) / count, a.shape),)  # d/da_i = 1/count  (a's shape)

    out = a.data.sum(axis=axes, keepdims=keepdims) / count
    return make("mean", out, (a,), back, f"d/da_i = 1/{count}")


def reshape(a: Any, shape: Any) -> Tensor:
    a = lift("reshape", a)
    try:
        out = a.data.reshape(shape)
    except (ValueError, TypeError):
        raise UsageError(f"reshape: cannot reshape shape {a.shape} ({a.size} elements) into {shape!r}") from None
    return make("reshape", out, (a,), lambda g: (g.reshape(a.shape),), "d/da = 1, reshaped back")


def transpose(a: Any, axes: Any = None) -> Tensor:
    a = lift("transpose", a)
    perm = tuple(range(a.ndim))[::-1] if axes is None else tuple(axes)
    if sorted(perm) != list(range(a.ndim)):
        raise UsageError(f"transpose: axes must be a permutation of 0..{a.ndim - 1}; got {axes!r}")
    inverse = tuple(int(i) for i in np.argsort(perm))
    back = lambda g: (g.transpose(inverse),)  # noqa: E731  d/da = 1, the axes put back   (a's shape)
    return make("transpose", a.data.transpose(perm), (a,), back, "d/da = 1, axes put back")


def index(a: Any, key: Any, op: str = "index") -> Tensor:
    """a[key] (NumPy indexing: slices, integer arrays, X[i, Y] picks); repeated indices add their gradients."""
    a = lift(op, a)
    parts = key if isinstance(key, tuple) else (key,)
    for part in parts:
        if isinstance(part, Tensor) and part.dtype.kind not in "iub":
            raise TypeError(f"{op}: an index tensor must hold integers or booleans; got {part.dtype}")
    key = tuple(p.data if isinstance(p, Tensor) else p for p in parts)
    try:
        out = a.data[key]
    except IndexError as error:
        raise IndexError(f"{op}: {error} (indexing a tensor of shape {a.shape})") from None

    def back(g: np.ndarray) -> tuple[Any]:
        grad = np.zeros_like(a.data)  # (a's shape) zero where nothing was picked
        np.add.at(grad, key, g)  # d/da[key] = 1, summed over repeats
        return (grad,)

    return make(op, out, (a,), back, "d/da = 1 where picked, else 0")
