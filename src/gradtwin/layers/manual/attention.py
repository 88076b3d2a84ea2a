"""Single-head causal self-attention, out = softmax(mask(Q K^T / sqrt(d_k))) V [Wo], derived by hand.

Params: Wq, Wk (d, d_k), Wv (d, d_v) and, optionally, an output projection Wo (d_v, d_out).
X is one sequence (T, d) or a batch of them (B, T, d); position i attends to positions j <= i.
`xp` is the array namespace of X (NumPy first; torch tensors without autograd work too).
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace, device

from gradtwin.layers.inputs import ATTENTION_NAMES, attention_shapes

Params = dict[str, Any]
NAMES = ATTENTION_NAMES  # Wq, Wk, Wv and, optionally, "Wo"


def forward(params: Params, X: Any) -> Any:
    """out = softmax(mask(Q K^T / sqrt(d_k))) V [Wo], with Q = X Wq, K = X Wk, V = X Wv.

    Shapes::  X (B, T, d) or (T, d)  ->  out (B, T, d_out) or (T, d_out); d_out = d_v without Wo
    """
    xp = array_namespace(X)
    attention_shapes(params, X)
    scale = 1.0 / math.sqrt(params["Wq"].shape[1])  # ()
    future = _future(X.shape[-2], xp, device(X))  # (T, T)
    Q = X @ params["Wq"]  # (B, T, d_k)
    K = X @ params["Wk"]  # (B, T, d_k)
    V = X @ params["Wv"]  # (B, T, d_v)
    S = (Q @ xp.matrix_transpose(K)) * scale  # (B, T, T)
    P = _softmax(xp.where(future, -xp.inf, S), xp)  # (B, T, T)
    A = P @ V  # (B, T, d_v)
    return A @ params["Wo"] if "Wo" in params else A  # (B, T, d_out)


def backward(params: Params, X: Any, dout: Any) -> Params:
    """dL/dX and dL/d(each weight) for the upstream gradient dout = dL/d(out).

    Forward::  Q = X Wq,  K = X Wk,  V = X Wv                      (each sequence on its own)
               S = Q K^T / sqrt(d_k)
               S~_ij = S_ij for j <= i, -inf for j > i             (the causal mask)
               P = softmax(S~) along each row,  A = P V,  out = A Wo (out = A without Wo)
    Chain::    dL/dA = dL/dout Wo^T ;  dL/dWo = A^T dL/dout        (dL/dA = dL/dout without Wo)
               dL/dV = P^T dL/dA
               dL/dP = dL/dA V^T
               dL/dS~_ij = P_ij (dL/dP_ij - sum_l dL/dP_il P_il)   (row by row, the softmax Jacobian
                                                                     diag(p) - p p^T, not P (1 - P))
               dL/dS_ij = dL/dS~_ij for j <= i, 0 for j > i         (the mask is a constant)
               dL/dQ = dL/dS K / sqrt(d_k)
               dL/dK = dL/dS^T Q / sqrt(d_k)
               dL/dWq = X^T dL/dQ ;  dL/dWk = X^T dL/dK ;  dL/dWv = X^T dL/dV   (summed over B and T)
               dL/dX = dL/dQ Wq^T + dL/dK Wk^T + dL/dV Wv^T
    Shapes::   X (B, T, d), Wq Wk (d, d_k), Wv (d, d_v), Wo (d_v, d_out), dout (B, T, d_out);
               S P (B, T, T)  ->  dX (B, T, d), dWq dWk (d, d_k), dWv (d, d_v), dWo (d_v, d_out)
               (X (T, d): the same without the B axis)
    """
    xp = array_namespace(X, dout)
    attention_shapes(params, X)
    scale = 1.0 / math.sqrt(params["Wq"].shape[1])  # ()
    future = _future(X.shape[-2], xp, device(X))  # (T, T)
    Q = X @ params["Wq"]  # (B, T, d_k)
    K = X @ params["Wk"]  # (B, T, d_k)
    V = X @ params["Wv"]  # (B, T, d_v)
    S = (Q @ xp.matrix_transpose(K)) * scale  # (B, T, T)
    P = _softmax(xp.where(future, -xp.inf, S), xp)  # (B, T, T)  exactly 0 for j > i
    A = P @ V  # (B, T, d_v)
    dA = dout @ xp.matrix_transpose(params["Wo"]) if "Wo" in params else dout  # (B, T, d_v)
    dV = xp.matrix_transpose(P) @ dA  # (B, T, d_v)
    dP = dA @ xp.matrix_transpose(V)  # (B, T, T)
    dS_masked = P * (dP - xp.sum(dP * P, axis=-1, keepdims=True))  # (B, T, T)  dL/dS~
    dS = xp.where(future, xp.zeros_like(dS_masked), dS_masked)  # (B, T, T)
    dQ = (dS @ K) * scale  # (B, T, d_k)
    dK = (xp.matrix_transpose(dS) @ Q) * scale  # (B, T, d_k)
    grads = {
        "X": dQ @ params["Wq"].T + dK @ params["Wk"].T + dV @ params["Wv"].T,  # (B, T, d)
        "Wq": _rows(X, xp).T @ _rows(dQ, xp),  # (d, d_k)
        "Wk": _rows(X, xp).T @ _rows(dK, xp),  # (d, d_k)
        "Wv": _rows(X, xp).T @ _rows(dV, xp),  # (d, d_v)
    }
    if "Wo" in params:
        grads["Wo"] = _rows(A, xp).T @ _rows(dout, xp)  # (d_v, d_out)
    return grads


def _softmax(S: Any, xp: Any) -> Any:
    """Row-wise softmax, shifted by each row's maximum so that exp never overflows.   (..., T) -> (..., T)"""
    E = xp.exp(S - xp.max(S, axis=-1, keepdims=True))  # (..., T)
    return E / xp.sum(E, axis=-1, keepdims=True)  # (..., T)


def _future(T: int, xp: Any, where: Any) -> Any:
    """mask[i, j] = j > i: the positions after i, which position i may not see.   -> (T, T)"""
    i = xp.arange(T, device=where)  # (T,)
    return i[None, :] > i[:, None]  # (T, T)


def _rows(A: Any, xp: Any) -> Any:
    """Every position of every sequence as one row.   (B, T, m) or (T, m) -> (B * T, m)"""
    return xp.reshape(A, (-1, A.shape[-1]))
