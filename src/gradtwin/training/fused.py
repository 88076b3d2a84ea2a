"""The linear model's loss and gradients in one pass over X, into buffers allocated once (NumPy).

The derivation of `manual.linear.gradients`, rearranged for speed: X is walked in row blocks
small enough to stay in cache, and each block's residual r = X_blk @ w + b - Y_blk serves the
loss (r.r), dL/db (sum r) and dL/dw (r @ X_blk) while X_blk is still in cache, so an
iteration reads X from memory once and allocates nothing of size n. The factor 2/n is
applied to the (d,)-sized sums instead of the n residuals. Each sum adds the same terms as
`gradients`, grouped differently, so the two differ only by rounding. The update itself is
the engines' one `update`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BLOCK_BYTES = 1 << 20  # at most 1 MiB of X per block: it stays in cache between its two products
# OpenBLAS splits a product over threads above ~10,000 rows, which on a busy machine costs
# more than the work; blocks stay below that (measured: comparisons/README.md).
MAX_ROWS = 8192


class FusedLinear:
    """`loss_and_gradients()` of pred = X @ w + b, X (n, d), unweighted, at the caller's current w and b."""

    def __init__(self, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
        self.params = params  # the caller's arrays, read at every call
        self.X, self.Y = X, Y
        n, d = X.shape
        self.n = n
        rows = max(1, min(n, MAX_ROWS, BLOCK_BYTES // max(1, d * X.itemsize)))
        self.blocks = [(s, min(n, s + rows)) for s in range(0, n, rows)]
        self.residual = np.empty(rows, dtype=X.dtype)  # (rows,) one block's residual
        self.dw = np.empty(d, dtype=X.dtype)  # (d,)
        self.dw_blk = np.empty(d, dtype=X.dtype)  # (d,)
        self.two_over_n = X.dtype.type(2.0 / n)

    def _sweep(self, gradient: bool) -> tuple[Any, Any]:
        """(sum r_i^2, sum r_i) over all rows; with `gradient`, self.dw = X.T @ r as well."""
        w, b = self.params["w"], self.params["b"]
        squares, total = 0.0, 0.0
        for s, e in self.blocks:
            r = self.residual[: e - s]  # (rows,) a view: no allocation
            X_blk = self.X[s:e]  # (rows, d)
            np.matmul(X_blk, w, out=r)
            r += b
            r -= self.Y[s:e]
            if gradient:
                np.matmul(r, X_blk, out=self.dw if s == 0 else self.dw_blk)  # X_blk is still in cache
                if s:
                    self.dw += self.dw_blk
            squares += np.dot(r, r)
            total += r.sum()
        return squares, total

    def loss(self) -> Any:
        """L = 1/n * sum_i r_i^2, () in the data's dtype."""
        squares, _ = self._sweep(gradient=False)
        return squares / self.n

    def loss_and_gradients(self) -> tuple[Any, dict[str, Any]]:
        """L, and dL/dw = 2/n * X.T @ r, dL/db = 2/n * sum_i r_i (the second a fresh 0-d array)."""
        squares, total = self._sweep(gradient=True)
        self.dw *= self.two_over_n  # (d,)
        return squares / self.n, {"w": self.dw, "b": np.asarray(total * self.two_over_n)}
