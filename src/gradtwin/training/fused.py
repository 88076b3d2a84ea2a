"""Each model's loss and gradients in one pass over X, into buffers allocated once (NumPy).

The derivations of `manual.<model>.gradients`, rearranged for speed: X is walked in row blocks
small enough to stay in cache, and each block's logits serve the loss terms and the block's
contribution to every gradient while X_blk is still in cache, so an iteration reads X from
memory once and allocates nothing of size n. Means are taken by dividing the (d,)-sized sums by
n (or by the weights' total) instead of each of the n terms, except where all rows are one block:
there its gradient terms are divided, once for every parameter. Each sum adds the same terms as
`gradients`, grouped differently, with the same stable formulas (softplus as
max(t, 0) + log1p(e^-|t|), log-sum-exp after subtracting the row's largest logit), so the two
differ only by rounding. The gradient arrays returned are buffers that the next call overwrites; the
update itself is the engines' one `update`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from gradtwin.models import Model

BLOCK_BYTES = 1 << 20  # at most 1 MiB of X per block: it stays in cache between its two products
# OpenBLAS splits a product over threads above ~10,000 rows, which on a busy machine costs
# more than the work; blocks stay below that (measured: comparisons/README.md).
MAX_ROWS = 8192


# All rows are one block where they fit in twice a block's bytes and in no more rows than OpenBLAS keeps on one
# thread: two blocks would make every per-block call twice and save no memory traffic (measured: the README).
WHOLE_ROWS = 10_000


def _block_rows(n: int, width: int, itemsize: int) -> int:
    """Rows of a block holding at most BLOCK_BYTES of `width` values a row, and at most MAX_ROWS rows; or all n
    rows, where n <= WHOLE_ROWS and they hold at most 2 * BLOCK_BYTES."""
    if n <= WHOLE_ROWS and n * width * itemsize <= 2 * BLOCK_BYTES:
        return max(1, n)
    return max(1, min(n, MAX_ROWS, BLOCK_BYTES // max(1, width * itemsize)))


def _blocks(n: int, rows: int) -> list[tuple[int, int]]:
    """(start, end) of successive blocks of `rows` rows, the last one shorter where n is not a multiple."""
    return [(s, min(n, s + rows)) for s in range(0, n, rows)]


class _Gradient:
    """One gradient summed over row blocks: the total, and a spare buffer for each block's part.

    `ones` (rows,) turns a column sum into a product, ones @ G: NumPy's sum over the rows of an
    (m, k) block is 5 to 15 times slower. With `transposed`, a product a @ b is formed as
    (b.T @ a.T).T, which OpenBLAS does faster for a weight's gradient A_blk.T @ G: 0.7 to 0.95 of
    the time for (16, 4), (32, 4) and (16, 32) (measured: comparisons/README.md).
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, ones: np.ndarray, transposed: bool = False) -> None:
        self.total = np.empty(shape, dtype=dtype)
        self.part = np.empty(shape[::-1] if transposed else shape, dtype=dtype)
        self.ones = ones
        self.transposed = transposed

    def add_product(self, a: np.ndarray, b: np.ndarray, first: bool) -> None:
        """total += a @ b (total = a @ b for the `first` block), through the spare buffer: no allocation."""
        if self.transposed:
            np.matmul(b.T, a.T, out=self.part)
            if first:
                np.copyto(self.total, self.part.T)
            else:
                self.total += self.part.T
        elif first:
            np.matmul(a, b, out=self.total)
        else:
            np.matmul(a, b, out=self.part)
            self.total += self.part

    def add_column_sums(self, G: np.ndarray, first: bool) -> None:
        """total += sum_i G_i (total = ... for the `first` block).   Shapes::  G (m, k) -> (k,), or G (m,) -> ()"""
        out = self.total if first else self.part
        if G.ndim == 1:
            np.add.reduce(G, out=out)  # np.sum's own reduction, without its 1 us of argument handling
        else:
            np.matmul(self.ones[: G.shape[0]], G, out=out)
        if not first:
            self.total += self.part


class _Rows(ABC):
    """What every fused path shares: the data, its row blocks, the mean's denominator and the biases' tiles.

    A subclass allocates its buffers and `self.grads` (a `_Gradient` by parameter name) once and
    gives `_walk(gradient)`, which walks every block into them and returns the loss total.
    """

    def __init__(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray, weight: Any, width: int) -> None:
        self.params = params  # the caller's arrays, read at every call
        self.X, self.Y, self.weight = X, Y, weight
        self.dtype = X.dtype
        self.n = X.shape[0]
        self.rows = _block_rows(self.n, width, X.itemsize)
        self.blocks = _blocks(self.n, self.rows)
        # one block: its gradient terms are divided by the denominator before the products, one operation
        # instead of one a parameter (at 30 x 1 each costs 1 to 1.6 us); several: the sums are, once a sweep
        self.whole = len(self.blocks) == 1
        # 1/n * sum_i, or sum_i v_i (...) / sum_i v_i: the denominator, in the data's dtype, as the twins sum it
        self.denominator = self.dtype.type(self.n) if weight is None else np.sum(weight)
        self.grads: dict[str, _Gradient] = {}  # each parameter's gradient sum, set by the subclass
        self.ones = np.ones(self.rows, dtype=self.dtype)  # (rows,) for column sums as products
        self.tiles: dict[str, np.ndarray] = {}  # bias name -> (rows, k) copies of it, refilled every sweep

    def buffer(self, *shape: int) -> np.ndarray:
        return np.empty((self.rows, *shape), dtype=self.dtype)

    def gradient(self, *shape: int, transposed: bool = False) -> _Gradient:
        return _Gradient(shape, self.dtype, self.ones, transposed)

    def tile(self, *names: str) -> None:
        """Add these (k,) biases from a copy in every row, made once a sweep, where there are several blocks.

        Adding b to each short row of an (m, k) block is 3 to 7 times slower than adding an (m, k) array.
        """
        if len(self.blocks) > 1:
            self.tiles = {name: self.buffer(*self.params[name].shape) for name in names}

    def add_bias(self, Z: np.ndarray, name: str) -> None:
        """Z += b, b = params[name].   Shapes::  Z (m, k), b (k,)"""
        tile = self.tiles.get(name)
        if tile is None:
            Z += self.params[name]
        else:
            np.add(Z, tile[: Z.shape[0]], out=Z)

    def mean(self, total: float) -> Any:
        """A loss total over all rows as the mean, () in the data's dtype."""
        return self.dtype.type(total / float(self.denominator))

    def weighted_sum(self, terms: np.ndarray, s: int, e: int) -> float:
        """sum_i terms_i over rows s..e, or sum_i v_i terms_i."""
        return float(terms.sum() if self.weight is None else np.dot(self.weight[s:e], terms))

    @abstractmethod
    def _walk(self, gradient: bool) -> float:
        """Every block's loss terms (and, with `gradient`, gradient terms into `self.grads`); the loss total."""

    def _sweep(self, gradient: bool) -> float:
        """The loss total over all rows; with `gradient`, each gradient's sum in `self.grads`."""
        for name, tile in self.tiles.items():
            np.copyto(tile, self.params[name])  # b in every row, for every block of this sweep
        return self._walk(gradient)

    def loss(self) -> Any:
        """L, () in the data's dtype."""
        return self.mean(self._sweep(gradient=False))

    def loss_and_gradients(self) -> tuple[Any, dict[str, Any]]:
        """L, and dL/dp for every parameter p, in buffers the next call overwrites."""
        total = self._sweep(gradient=True)
        grads = self.grads
        if not self.whole:
            for grad in grads.values():
                grad.total /= self.denominator
        return self.mean(total), {name: grad.total for name, grad in grads.items()}


class FusedLinear(_Rows):
    """`loss_and_gradients()` of pred = X @ w + b, X (n, d), unweighted, at the caller's current w and b.

    Per block:: r = X_blk w + b - Y_blk ;  L += sum r^2 ;  dw += X_blk.T @ r ;  db += sum r
                then L /= n, and dw, db times 2/n
    """

    def __init__(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        super().__init__(params, X, Y, None, width=X.shape[1])
        self.two_over_n = self.dtype.type(2.0 / self.n)
        self.grads = {"w": self.gradient(X.shape[1]), "b": self.gradient()}
        self.residual = self.buffer()  # (rows,) one block's residual

    def _walk(self, gradient: bool) -> float:
        """sum r_i^2 over all rows; with `gradient`, X.T @ r and sum_i r_i into self.grads."""
        w, b = self.params["w"], self.params["b"]
        dw, db = self.grads["w"], self.grads["b"]
        squares = 0.0
        for j, (s, e) in enumerate(self.blocks):
            r = self.residual[: e - s]  # (rows,) a view: no allocation
            X_blk = self.X[s:e]  # (rows, d)
            np.matmul(X_blk, w, out=r)
            r += b
            r -= self.Y[s:e]
            squares += float(np.dot(r, r))
            if gradient:
                if self.whole:
                    r *= self.two_over_n
                dw.add_product(r, X_blk, j == 0)  # X_blk is still in cache
                db.add_column_sums(r, j == 0)
        return squares

    def loss_and_gradients(self) -> tuple[Any, dict[str, Any]]:
        """L = 1/n * sum_i r_i^2, dL/dw = 2/n * X.T @ r (d,), dL/db = 2/n * sum_i r_i ()."""
        squares = self._sweep(gradient=True)
        grads = self.grads
        if not self.whole:
            for grad in grads.values():
                grad.total *= self.two_over_n
        return self.mean(squares), {name: grad.total for name, grad in grads.items()}


def _sigmoid_into(t: np.ndarray, e: np.ndarray, out: np.ndarray, mask: np.ndarray) -> None:
    """out = sigma(t) as `manual.logistic.sigmoid` computes it, from e = exp(-|t|) (overwritten).

    where(t >= 0, 1, e) / (1 + e): no branch overflows. `out` may be `t` itself.
    """
    np.greater_equal(t, 0, out=mask)
    np.copyto(out, e)
    np.copyto(out, 1.0, where=mask)  # the numerator: 1 where t >= 0, else e
    e += 1.0
    np.divide(out, e, out=out)


def _exp_neg_abs(t: np.ndarray, out: np.ndarray) -> None:
    """out = exp(-|t|), in (0, 1]."""
    np.abs(t, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)


COLUMNS = 64  # up to this many classes, a row reduction runs as elementwise operations over the columns


def _row_reduce(op: np.ufunc, Z: np.ndarray, out: np.ndarray) -> None:
    """out_i = op over c of Z_ic, left to right, as np.max / np.sum(axis=1) give for a few columns.

    NumPy reduces the short rows of an (m, k) block one row at a time, about ten times slower at
    k = 4 than k elementwise passes over its strided columns; above COLUMNS columns it is the other
    way round. (The sum's order may differ from NumPy's pairwise one: rounding only.)
    Shapes::  Z (m, k), out (m,)
    """
    k = Z.shape[1]
    if k > COLUMNS:
        op.reduce(Z, axis=1, out=out)
        return
    np.copyto(out, Z[:, 0])
    for c in range(1, k):
        op(out, Z[:, c], out=out)


BY_COLUMNS = 16  # up to this many classes, an operation of each row with one number runs column by column
SHORT = 512  # ... in blocks of at least this many rows


def _each_row(op: np.ufunc, Z: np.ndarray, v: np.ndarray) -> None:
    """Z_ic = op(Z_ic, v_i) in place, for every column c.

    With a few columns, k operations on strided columns are about twice as fast as one broadcast over short
    rows; in a block of fewer than SHORT rows, the k calls cost more than the work (at 30 x 4: 4.2 us against 1.3).
    Shapes::  Z (m, k), v (m,)
    """
    if Z.shape[1] > BY_COLUMNS or Z.shape[0] < SHORT:
        op(Z, v[:, None], out=Z)
        return
    for c in range(Z.shape[1]):
        column = Z[:, c]
        op(column, v, out=column)


def _check_labels(Y: np.ndarray, k: int) -> None:
    """The head indexes Z.ravel() by i*k + Y_i: labels outside 0..k-1 are refused, not clipped."""
    if Y.size and (np.min(Y) < 0 or np.max(Y) >= k):
        raise ValueError(f"Y must hold class labels 0..{k - 1}; got labels from {np.min(Y)} to {np.max(Y)}")


class _Head:
    """The cross-entropy head of `manual.softmax` on one block of logits, in place, in buffers of a block's rows."""

    def __init__(self, rows: _Rows, k: int) -> None:
        self.rows = rows
        self.largest = rows.buffer()  # (rows,)  m_i = max_c Z_ic
        self.sums = rows.buffer()  # (rows,)  sum_c exp(Z_ic - m_i)
        self.terms = rows.buffer()  # (rows,)  lse_i - Z_{i,Y_i}
        self.picked = rows.buffer()  # (rows,)  Z_{i,Y_i} - m_i, then P_{i,Y_i}
        self.offsets = np.arange(rows.rows, dtype=np.int64) * k  # (rows,)  where row i starts in Z.ravel()
        self.index = np.empty(rows.rows, dtype=np.int64)  # (rows,)  i*k + Y_i

    def __call__(self, Z: np.ndarray, s: int, e: int, gradient: bool) -> float:
        """The block's (weighted) sum of lse_i - Z_{i,Y_i}; with `gradient`, Z becomes n * dL/dZ.

        n * dL/dZ_i = P_i - onehot(Y_i), or times v_i (divided by sum v with the rest, later).
        Shapes::  Z (m, k) rows s..e  ->  Z (m, k) in place
        """
        m = e - s
        flat = np.reshape(Z, -1, copy=False)  # (m * k,) a view of the contiguous block: `put` writes into Z
        largest, sums, terms, picked, index = (
            b[:m] for b in (self.largest, self.sums, self.terms, self.picked, self.index)
        )
        _row_reduce(np.maximum, Z, largest)
        _each_row(np.subtract, Z, largest)  # Z_ic - m_i <= 0
        np.add(self.offsets[:m], self.rows.Y[s:e], out=index)
        np.take(flat, index, out=picked, mode="clip")  # Z_{i,Y_i} - m_i (labels checked at the start)
        np.exp(Z, out=Z)  # exp(Z_ic - m_i) in (0, 1]
        _row_reduce(np.add, Z, sums)  # in [1, k]
        np.log(sums, out=terms)
        terms -= picked  # lse_i - Z_{i,Y_i} = log sums_i - (Z_{i,Y_i} - m_i), each >= 0
        total = self.rows.weighted_sum(terms, s, e)
        if gradient:
            _each_row(np.divide, Z, sums)  # P_ic
            np.take(flat, index, out=picked, mode="clip")
            picked -= 1.0
            np.put(flat, index, picked)  # P - onehot(Y)
            if self.rows.weight is not None:
                _each_row(np.multiply, Z, self.rows.weight[s:e])
        return total


class FusedLogistic(_Rows):
    """`loss_and_gradients()` of the mean cross-entropy of z = X @ w + b, X (n, d), Y (n,) 0 or 1, weights v or None.

    Once:: s = 1 - 2y (n,), +1 or -1 (exact)
    Per block:: t = s*z ;  e = exp(-|t|) ;  softplus(t) = max(t, 0) + log1p(e)
                n * dL/dz = s * sigma(t) (times v) ;  dw += X_blk.T @ (n dL/dz) ;  db += sum (n dL/dz)
    """

    def __init__(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray, weight: Any = None) -> None:
        super().__init__(params, X, Y, weight, width=X.shape[1] + 5)
        self.sign = (1 - 2 * np.asarray(Y)).astype(self.dtype)  # (n,) s = 1 - 2y, once: not a per-iteration array
        self.grads = {"w": self.gradient(X.shape[1]), "b": self.gradient()}
        self.t, self.e, self.g = (self.buffer() for _ in range(3))  # (rows,) each
        self.mask = np.empty(self.rows, dtype=bool)  # (rows,)

    def _walk(self, gradient: bool) -> float:
        """The (weighted) softplus total; with `gradient`, X.T @ (n dL/dz) and sum_i n dL/dz_i in self.grads."""
        w, b = self.params["w"], self.params["b"]
        dw, db = self.grads["w"], self.grads["b"]
        total = 0.0
        for j, (s, e) in enumerate(self.blocks):
            m = e - s
            X_blk = self.X[s:e]  # (m, d)
            t, ex, g, mask = self.t[:m], self.e[:m], self.g[:m], self.mask[:m]
            sign = self.sign[s:e]  # (m,)
            np.matmul(X_blk, w, out=t)
            t += b  # z = X w + b
            t *= sign  # t = s z (exact)
            _exp_neg_abs(t, ex)
            np.maximum(t, 0.0, out=g)
            total += self.weighted_sum(g, s, e)
            np.log1p(ex, out=g)
            total += self.weighted_sum(g, s, e)  # softplus(t) = max(t, 0) + log1p(e^-|t|), both >= 0
            if gradient:
                _sigmoid_into(t, ex, g, mask)  # sigma(t)
                g *= sign  # n dL/dz = s sigma(s z)
                if self.weight is not None:
                    g *= self.weight[s:e]
                if self.whole:
                    g /= self.denominator
                dw.add_product(g, X_blk, j == 0)  # X_blk is still in cache
                db.add_column_sums(g, j == 0)
        return total


class FusedSoftmax(_Rows):
    """`loss_and_gradients()` of the mean cross-entropy of Z = X @ W + b, X (n, d), W (d, k), weights v or None.

    Per block:: Z = X_blk W + b ;  the head (`_Head`): loss terms and n dL/dZ = P - onehot(Y) (times v)
                dW += X_blk.T @ (n dL/dZ) ;  db += sum_i (n dL/dZ_i)
    """

    def __init__(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray, weight: Any = None) -> None:
        d, k = params["W"].shape
        super().__init__(params, X, Y, weight, width=d + k + 5)
        _check_labels(Y, k)
        self.tile("b")
        self.grads = {"W": self.gradient(d, k, transposed=True), "b": self.gradient(k)}
        self.Z = self.buffer(k)  # (rows, k)
        self.head = _Head(self, k)

    def _walk(self, gradient: bool) -> float:
        W = self.params["W"]
        dW, db = self.grads["W"], self.grads["b"]
        total = 0.0
        for j, (s, e) in enumerate(self.blocks):
            X_blk = self.X[s:e]  # (m, d)
            Z = self.Z[: e - s]  # (m, k)
            np.matmul(X_blk, W, out=Z)
            self.add_bias(Z, "b")
            total += self.head(Z, s, e, gradient)
            if gradient:
                if self.whole:
                    Z /= self.denominator
                dW.add_product(X_blk.T, Z, j == 0)  # X_blk is still in cache
                db.add_column_sums(Z, j == 0)
        return total


class FusedMLP(_Rows):
    """`loss_and_gradients()` of the one-hidden-layer network of `manual.mlp`, X (n, d), unweighted.

    Per block:: A = X_blk W1 + b1 ;  H = act(A) (in A's buffer) ;  Z = H W2 + b2 ;  the head (`_Head`)
                G = n dL/dZ ;  dW2 += H.T @ G ;  db2 += sum_i G_i ;  dA = (G @ W2.T) * act'(A)
                dW1 += X_blk.T @ dA ;  db1 += sum_i dA_i
                act'(A) from H: 1 - H^2 (tanh), H (1 - H) (sigmoid), H > 0 (relu: exactly where A > 0)
    """

    def __init__(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray, activation: str = "tanh") -> None:
        if activation not in ("tanh", "relu", "sigmoid"):
            raise ValueError(f"activation must be one of tanh, relu, sigmoid; got {activation!r}")
        d, h = params["W1"].shape
        k = params["W2"].shape[1]
        super().__init__(params, X, Y, None, width=d + 3 * h + k + 5)
        _check_labels(Y, k)
        self.activation = activation
        self.tile("b1", "b2")
        self.grads = {name: self.gradient(*p.shape, transposed=name in ("W1", "W2")) for name, p in params.items()}
        self.H, self.dH, self.tmp = (self.buffer(h) for _ in range(3))  # (rows, h) each
        self.mask = np.empty((self.rows, h), dtype=bool)  # (rows, h)
        self.Z = self.buffer(k)  # (rows, k)
        self.head = _Head(self, k)

    def _activate(self, H: np.ndarray, tmp: np.ndarray, mask: np.ndarray) -> None:
        """H = act(A) in place, as `manual.mlp.activate` computes it."""
        if self.activation == "tanh":
            np.tanh(H, out=H)
        elif self.activation == "relu":
            np.greater(H, 0, out=mask)
            np.logical_not(mask, out=mask)
            np.copyto(H, 0.0, where=mask)  # where(A > 0, A, 0): a NaN becomes 0 there too
        else:
            _exp_neg_abs(H, tmp)
            _sigmoid_into(H, tmp, H, mask)

    def _derivative(self, dH: np.ndarray, H: np.ndarray, tmp: np.ndarray, mask: np.ndarray) -> None:
        """dH *= act'(A) in place, as `manual.mlp.activation_derivative` computes it."""
        if self.activation == "tanh":
            np.multiply(H, H, out=tmp)
            np.subtract(1.0, tmp, out=tmp)  # 1 - H^2
            dH *= tmp
        elif self.activation == "sigmoid":
            np.subtract(1.0, H, out=tmp)
            tmp *= H  # H (1 - H)
            dH *= tmp
        else:
            np.less_equal(H, 0, out=mask)  # H <= 0 exactly where A <= 0 (H has no NaN)
            np.multiply(dH, 0.0, out=dH, where=mask)  # dH * [A > 0], as the twin's product (inf * 0 is NaN)

    def _walk(self, gradient: bool) -> float:
        p, g = self.params, self.grads
        total = 0.0
        for j, (s, e) in enumerate(self.blocks):
            m = e - s
            X_blk = self.X[s:e]  # (m, d)
            H, dH, tmp, mask, Z = self.H[:m], self.dH[:m], self.tmp[:m], self.mask[:m], self.Z[:m]
            np.matmul(X_blk, p["W1"], out=H)
            self.add_bias(H, "b1")  # A = X W1 + b1
            self._activate(H, tmp, mask)  # H = act(A)
            np.matmul(H, p["W2"], out=Z)
            self.add_bias(Z, "b2")  # Z = H W2 + b2
            total += self.head(Z, s, e, gradient)  # Z becomes G = n dL/dZ
            if gradient:
                if self.whole:
                    Z /= self.denominator  # dL/dZ
                g["W2"].add_product(H.T, Z, j == 0)
                g["b2"].add_column_sums(Z, j == 0)
                np.matmul(Z, p["W2"].T, out=dH)  # n dL/dH
                self._derivative(dH, H, tmp, mask)  # n dL/dA
                g["W1"].add_product(X_blk.T, dH, j == 0)  # X_blk is still in cache
                g["b1"].add_column_sums(dH, j == 0)
        return total


def fused(model: Model, params: dict[str, Any], X: Any, Y: Any, weight: Any) -> Any:
    """The one-pass path of `model`'s manual twin on NumPy float32/float64 arrays, or None where it has none.

    Only gradtwin's own twins have one (a replaced or planted twin keeps its own functions).
    linear: unweighted only (weighted runs take the readable twin's functions); logistic and
    softmax: with or without weights; the mlp: every activation (it takes no weights).
    """
    own = getattr(model.manual, "__name__", "").split("[")[0] == f"gradtwin.manual.{model.family}"
    if not own or not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype not in (np.float32, np.float64):
        return None
    if X.shape[0] == 0:
        return None
    if model.family == "linear" and weight is None:
        return FusedLinear(params, X, Y)
    if model.family == "logistic":
        return FusedLogistic(params, X, Y, weight)
    if model.family == "softmax":
        return FusedSoftmax(params, X, Y, weight)
    if model.family == "mlp" and weight is None:
        return FusedMLP(params, X, Y, model.options.get("activation", "tanh"))
    return None
