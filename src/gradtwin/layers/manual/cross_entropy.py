"""The mean cross-entropy of logits X (n, k) against integer labels Y (n,), derived by hand.

Stable through the log-sum-exp: each row is shifted by its maximum before exp. Params: none ({}).
`xp` is the array namespace of X (NumPy first; torch tensors without autograd work too).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, device

from gradtwin.errors import DataError, DataTypeError

Params = dict[str, Any]


def forward(params: Params, X: Any, Y: Any) -> Any:
    """L = 1/n * sum_i (logsumexp(X_i) - X_i,Y_i).   Shapes::  X (n, k), Y (n,) integers in [0, k)  ->  L ()"""
    xp = array_namespace(X, Y)
    _check(X, Y)
    n = X.shape[0]
    shifted = X - xp.max(X, axis=1, keepdims=True)  # (n, k)  X_ij - max_j X_ij <= 0
    log_P = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))  # (n, k)  log softmax
    return -xp.sum(xp.sum(log_P * _onehot(Y, X.shape[1], X.dtype, xp, device(X)), axis=1)) / n  # ()


def backward(params: Params, X: Any, dout: Any, Y: Any) -> Params:
    """dL/dX for the upstream gradient dout = dL/d(loss), a scalar.

    Forward::  P_ij = exp(X_ij) / sum_l exp(X_il)                     (softmax of each row)
               loss = -1/n * sum_i log P_i,Y_i = 1/n * sum_i (logsumexp(X_i) - X_i,Y_i)
    Chain::    dloss/dX_ij = 1/n * (P_ij - [j = Y_i])                 (d logsumexp(X_i)/dX_ij = P_ij)
               dL/dX = dout * dloss/dX
    Shapes::   X (n, k), Y (n,), dout ()  ->  P, onehot(Y), dX (n, k)
    """
    xp = array_namespace(X, Y)
    _check(X, Y)
    n = X.shape[0]
    shifted = X - xp.max(X, axis=1, keepdims=True)  # (n, k)
    E = xp.exp(shifted)  # (n, k)
    P = E / xp.sum(E, axis=1, keepdims=True)  # (n, k)
    dloss = (P - _onehot(Y, X.shape[1], X.dtype, xp, device(X))) / n  # (n, k)
    return {"X": dout * dloss}  # (n, k)


def _onehot(Y: Any, k: int, dtype: Any, xp: Any, where: Any) -> Any:
    """onehot[i, j] = 1 where j = Y_i, else 0.   Y (n,) -> (n, k)"""
    return xp.astype(Y[:, None] == xp.arange(k, device=where)[None, :], dtype)  # (n, k)


def _check(X: Any, Y: Any) -> None:
    """One error naming the input when the logits and labels do not fit together."""
    xp = array_namespace(X, Y)
    if X.ndim != 2 or Y.ndim != 1 or X.shape[0] != Y.shape[0] or min(X.shape) < 1:
        raise DataError(
            f"cross_entropy: X (the logits) must be 2-D (n, k) with n, k >= 1 and Y 1-D (n,); got X "
            f"{tuple(X.shape)}, Y {tuple(Y.shape)}"
        )
    if not xp.isdtype(Y.dtype, "integral"):
        kind = str(Y.dtype).removeprefix("torch.")  # float64 from NumPy and torch alike
        raise DataTypeError(f"cross_entropy: Y must hold integer class indices; got dtype {kind}")
    k = X.shape[1]
    bad = xp.nonzero((Y < 0) | (Y >= k))[0]  # (m,)
    if bad.shape[0]:
        i = int(bad[0])
        raise DataError(
            f"cross_entropy: Y must hold class indices in [0, k) with k = {k}, the columns of X; got {int(Y[i])} "
            f"at row {i}"
        )
