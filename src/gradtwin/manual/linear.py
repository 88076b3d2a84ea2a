"""Multivariate linear regression, pred = X @ w + b with mean squared error, derived by hand.

`xp` is the array namespace of the data (NumPy by default), so the same source also runs on
torch tensors without autograd. Every loss is a mean over the samples; with `weight`
(v (n,), >= 0, not all 0) it is the weighted mean sum_i v_i l_i / sum_i v_i instead, so an
integer weight counts a sample that many times and a zero weight drops it. `Fused` at the
end is the NumPy-only fast path the training loop uses: the same derivation, evaluated into
preallocated buffers (unweighted only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

Params = dict[str, Any]


def predict(params: Params, X: Any) -> Any:
    """pred = X @ w + b.   Shapes::  X (n, d), w (d,), b ()  ->  pred (n,)"""
    return X @ params["w"] + params["b"]


def loss(params: Params, X: Any, Y: Any, weight: Any = None) -> Any:
    """Mean squared error.   Loss::  L = 1/n * sum_i (X_i . w + b - Y_i)^2   ->  ()

    Weighted::  L = sum_i v_i (X_i . w + b - Y_i)^2 / sum_i v_i
    """
    xp = array_namespace(X, Y)
    residual = predict(params, X) - Y  # (n,)
    if weight is None:
        return xp.mean(residual * residual)  # ()
    return xp.sum(weight * (residual * residual)) / xp.sum(weight)  # ()


def gradients(params: Params, X: Any, Y: Any, weight: Any = None) -> Params:
    """Gradients of the mean squared error with respect to w and b.

    Loss::    L = 1/n * sum_i (pred_i - Y_i)^2,   pred_i = sum_j X_ij w_j + b
    Chain::   dL/dpred_i = 2/n * (pred_i - Y_i)
              dL/dw_j = sum_i dL/dpred_i * X_ij   i.e. dL/dw = X.T @ dL/dpred   (dpred_i/dw_j = X_ij)
              dL/db = sum_i dL/dpred_i                                          (dpred_i/db = 1)
    Weighted::  dL/dpred_i = 2 * v_i / sum_k v_k * (pred_i - Y_i), the rest unchanged
    Shapes::  X (n, d), Y (n,), w (d,), b (), v (n,)  ->  dw (d,), db ()
    """
    xp = array_namespace(X, Y)
    n = X.shape[0]
    residual = predict(params, X) - Y  # (n,)
    if weight is None:
        dpred = (2.0 / n) * residual  # (n,)
    else:
        dpred = (2.0 / xp.sum(weight)) * (weight * residual)  # (n,)
    dw = dpred @ X  # (d,)  = X.T @ dpred, summed over the n rows
    db = xp.sum(dpred)  # ()
    return {"w": dw, "b": db}


def gradient_scale(params: Params, X: Any, Y: Any, weight: Any = None) -> Params:
    """Sum of the magnitudes of the terms each gradient adds up, for rounding bounds.

    A term of dw_j is 2/n * X_ij * (X_i . w + b - Y_i); its rounding error is bounded by a few
    unit roundoffs of 2/n * |X_ij| * (|X_i| . |w| + |b| + |Y_i|), whatever the residual's sign
    (weighted: 2 * v_i / sum_k v_k in place of 2/n).
    Shapes::  -> {"w": (d,), "b": ()}
    """
    xp = array_namespace(X, Y)
    n = X.shape[0]
    size = xp.abs(X) @ xp.abs(params["w"]) + xp.abs(params["b"]) + xp.abs(Y)  # (n,)
    if weight is None:
        return {"w": (2.0 / n) * (size @ xp.abs(X)), "b": (2.0 / n) * xp.sum(size)}
    size = (2.0 / xp.sum(weight)) * (weight * size)  # (n,)
    return {"w": size @ xp.abs(X), "b": xp.sum(size)}


def loss_scale(params: Params, X: Any, Y: Any, weight: Any = None) -> Any:
    """Bound on the magnitude of the loss's terms: 1/n * sum_i (|X_i| . |w| + |b| + |Y_i|)^2 (weighted mean)."""
    xp = array_namespace(X, Y)
    size = xp.abs(X) @ xp.abs(params["w"]) + xp.abs(params["b"]) + xp.abs(Y)  # (n,)
    if weight is None:
        return xp.mean(size * size)
    return xp.sum(weight * (size * size)) / xp.sum(weight)


def rounding_terms(X: Any) -> int:
    """The longest sum: n rows in dw and db, after d + 2 terms in each residual."""
    return int(X.shape[0]) + int(X.shape[1]) + 2


def hessian(X: Any, weight: Any = None) -> Any:
    """Hessian of the loss in (w, b); constant, since the loss is quadratic.

    With A = [X 1] (n, d + 1):  H = 2/n * A.T @ A      Shapes::  X (n, d) -> H (d + 1, d + 1)
    Weighted::  H = 2 * A.T @ diag(v) @ A / sum_i v_i
    Gradient descent is stable for lr < 2 / lambda_max(H).
    """
    xp = array_namespace(X)
    n = X.shape[0]
    A = xp.concat([X, xp.ones((n, 1), dtype=X.dtype, device=device(X))], axis=1)  # (n, d + 1)
    if weight is None:
        return (2.0 / n) * (A.T @ A)  # (d + 1, d + 1)
    return (2.0 / xp.sum(weight)) * (A.T @ (weight[:, None] * A))  # (d + 1, d + 1)


class Fused:
    """`loss` and a gradient step in one pass over X, into buffers allocated once (NumPy only).

    The same derivation as `gradients`, rearranged for speed: X is walked in row blocks small
    enough to stay in cache, and each block's residual r_blk = X_blk @ w + b - Y_blk is computed
    once and serves the loss (r.r), dL/db (sum r) and dL/dw (r_blk @ X_blk) while X_blk is still
    in cache, so an iteration reads X from memory once and allocates nothing of size n. The
    factor 2/n is applied to the (d,)-sized sums instead of the n residuals. Each sum adds the
    same terms as `gradients`, grouped differently, so the two differ only by rounding, within
    `parity.tolerance` of each other.
    """

    BLOCK_BYTES = 1 << 20  # at most 1 MiB of X per block: it stays in cache between its two products
    # OpenBLAS splits a dot or matrix-vector product over threads above ~10,000 rows; on a
    # busy machine that hand-off costs more than the work (measured: 1M x 16, 8,192-row blocks
    # 10 ms per iteration, 16,384-row blocks 490 ms), so blocks stay below it.
    MAX_ROWS = 8192

    def __init__(self, params: Params, X: np.ndarray, Y: np.ndarray) -> None:
        self.w, self.b = params["w"], params["b"]  # updated in place: the caller's arrays
        self.X, self.Y = X, Y
        n, d = X.shape
        self.n = n
        rows = max(1, min(n, self.MAX_ROWS, self.BLOCK_BYTES // max(1, d * X.itemsize)))
        self.blocks = [(s, min(n, s + rows)) for s in range(0, n, rows)]
        self.residual = np.empty(rows, dtype=X.dtype)  # (rows,) one block's residual
        self.dw = np.empty(d, dtype=X.dtype)  # (d,)
        self.dw_blk = np.empty(d, dtype=X.dtype)  # (d,)
        self.two_over_n = X.dtype.type(2.0 / n)

    def _sweep(self, gradient: bool) -> tuple[Any, Any]:
        """(sum r_i^2, sum r_i) over all rows; with `gradient`, self.dw = X.T @ r as well."""
        squares, total = 0.0, 0.0
        for s, e in self.blocks:
            r = self.residual[: e - s]  # (rows,) a view: no allocation
            X_blk = self.X[s:e]  # (rows, d)
            np.matmul(X_blk, self.w, out=r)
            r += self.b
            r -= self.Y[s:e]
            if gradient:
                np.matmul(r, X_blk, out=self.dw if s == 0 else self.dw_blk)  # X_blk is still in cache
                if s:
                    self.dw += self.dw_blk
            squares += np.dot(r, r)
            total += r.sum()
        return squares, total

    def loss(self) -> np.ndarray:
        """L at the current parameters, () in the data's dtype."""
        squares, _ = self._sweep(gradient=False)
        return squares / self.n

    def step(self, lr: float) -> np.ndarray:
        """L at the current parameters, then w -= lr * dL/dw and b -= lr * dL/db in place.

        lr * 2/n is applied as one factor to the row sums, one rounding fewer than
        `lr * gradients(...)`; the fused-path test bounds the difference.
        """
        squares, total = self._sweep(gradient=True)
        factor = self.two_over_n * lr  # lr * dL/d(sum of terms)
        self.b -= total * factor  # b -= lr * dL/db
        self.dw *= factor  # (d,)  lr * dL/dw
        self.w -= self.dw
        return squares / self.n
