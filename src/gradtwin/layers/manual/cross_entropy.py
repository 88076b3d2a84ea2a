"""The mean cross-entropy of logits X (n, k) against integer labels Y (n,), derived by hand.

Stable through the log-sum-exp: each row is shifted by its maximum before exp. Params: none ({}).
`xp` is the array namespace of X (NumPy first; torch tensors without autograd work too).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, device

from gradtwin.layers.inputs import cross_entropy_inputs

Params = dict[str, Any]


def forward(params: Params, X: Any, Y: Any) -> Any:
    """L = 1/n * sum_i (logsumexp(X_i) - X_i,Y_i).   Shapes::  X (n, k), Y (n,) integers in [0, k)  ->  L ()"""
    xp = array_namespace(X, Y)
    cross_entropy_inputs(X, Y)
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
    cross_entropy_inputs(X, Y)
    n = X.shape[0]
    shifted = X - xp.max(X, axis=1, keepdims=True)  # (n, k)
    E = xp.exp(shifted)  # (n, k)
    P = E / xp.sum(E, axis=1, keepdims=True)  # (n, k)
    dloss = (P - _onehot(Y, X.shape[1], X.dtype, xp, device(X))) / n  # (n, k)
    return {"X": dout * dloss}  # (n, k)


def _onehot(Y: Any, k: int, dtype: Any, xp: Any, where: Any) -> Any:
    """onehot[i, j] = 1 where j = Y_i, else 0.   Y (n,) -> (n, k)"""
    return xp.astype(Y[:, None] == xp.arange(k, device=where)[None, :], dtype)  # (n, k)
