"""One pre-LN transformer block as a next-character model, with gradients from gradtwin's own autodiff.

The same block as the manual twin (see there): E = Etok[X] + Epos, H1 = E + attention(LN1(E)),
H2 = H1 + MLP(LN2(H1)), Z = LNf(H2) Wout + bout at every position, each position trained on the
character after it. The engine has no layer-norm or attention op: both are written in its smaller
ops inside `forward` (mean, sub, mul, pow, batched matmul, transpose, where for the causal mask,
logsumexp for a stable softmax), so that backward derives them. The final layer norm is there when
params hold gammaf.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gradtwin.autodiff import Tensor, ops, tap
from gradtwin.errors import DataError
from gradtwin.layers.inputs import attention_shapes, window_indices
from gradtwin.tape.backward import loss_and_gradients
from gradtwin.tape.softmax import cross_entropy

Params = dict[str, Tensor]
ATTENTION = ("Wq", "Wk", "Wv", "Wo")
EPS = 1e-5  # layer norm's, as torch's default and the manual layer twin's


def forward(params: Params, X: Any) -> dict[str, Any]:
    """Every intermediate of the block, by name, in forward order (each tapped for the step-by-step view).

    Forward:: LN(X) = gamma * (X - mu) / sqrt(var + eps) + beta,  mu, var = mean and biased variance of each row
              attn(X) = softmax(mask(Q K^T / sqrt(d))) V Wo,  Q K V = X Wq, X Wk, X Wv;  mask: j > i -> -inf
    Shapes::  X (n, T), Etok (V, d), Epos (T, d), Wq Wk Wv Wo (d, d), W1 (d, 4d), W2 (4d, d), Wout (d, V)
              ->  E N1 A H1 N2 (n, T, d), U R (n, T, 4d), M H2 Hf (n, T, d), Z (n, T, V)
    """

    def layer_norm(which: str, Xin: Tensor) -> Tensor:
        """Layer norm `which` ('1', '2' or 'f') over the last axis.   Shapes::  (n, T, d) -> (n, T, d)"""
        Xc = Xin - Xin.mean(axis=-1, keepdims=True)  # (n, T, d)
        var = (Xc * Xc).mean(axis=-1, keepdims=True)  # (n, T, 1)  biased: 1/d
        return params["gamma" + which] * (Xc / (var + EPS) ** 0.5) + params["beta" + which]  # (n, T, d)

    def attention(Xin: Tensor) -> Tensor:
        """Single-head causal self-attention with the output projection.   Shapes::  (n, T, d) -> (n, T, d)"""
        attention_shapes({k: params[k] for k in ATTENTION}, Xin)
        Q, K, V = (Xin @ params[k] for k in ATTENTION[:3])  # (n, T, d) each
        S = (Q @ ops.transpose(K, (0, 2, 1))) * (1.0 / math.sqrt(Q.shape[-1]))  # (n, T, T)
        future = np.triu(np.ones((Xin.shape[1], Xin.shape[1]), dtype=bool), k=1)  # (T, T)  j > i: not to be seen
        S = ops.where(future, -np.inf, S)  # (n, T, T)  the masked scores get no gradient
        P = ops.exp(S - ops.logsumexp(S, axis=-1, keepdims=True))  # (n, T, T)  softmax of each row, stable
        return (P @ V) @ params["Wo"]  # (n, T, d)

    idx = indices(params, X)  # (n, T) int64
    E = tap("E", ops.take(params["Etok"], idx) + params["Epos"])  # (n, T, d)  repeated characters accumulate
    N1 = tap("N1", layer_norm("1", E))  # (n, T, d)
    A = tap("A", attention(N1))  # (n, T, d)
    H1 = tap("H1", E + A)  # (n, T, d)
    N2 = tap("N2", layer_norm("2", H1))  # (n, T, d)
    U = tap("U", N2 @ params["W1"] + params["b1"])  # (n, T, 4d)
    R = tap("R", ops.relu(U))  # (n, T, 4d)
    M = tap("M", R @ params["W2"] + params["b2"])  # (n, T, d)
    H2 = tap("H2", H1 + M)  # (n, T, d)
    Hf = tap("Hf", layer_norm("f", H2)) if "gammaf" in params else H2  # (n, T, d)
    Z = tap("Z", Hf @ params["Wout"] + params["bout"])  # (n, T, V)
    return {"idx": idx, "E": E, "N1": N1, "A": A, "H1": H1, "N2": N2, "U": U, "R": R, "M": M, "H2": H2, "Hf": Hf,
            "Z": Z}  # fmt: skip


def predict(params: Params, X: Any) -> np.ndarray:
    """The character after each window: the largest logit at the last position.   Shapes::  X (n, T) -> (n,) int64"""
    return np.argmax(forward(params, X)["Z"].data[:, -1, :], axis=1).astype(np.int64)


def loss(params: Params, X: Any, Y: Any) -> Tensor:
    """Mean cross-entropy over the n * T positions.   Loss::  L = 1/(nT) sum_it (lse_it - Z_{it,y_it})   ->  ()"""
    fw = forward(params, X)
    Z = fw["Z"]  # (n, T, V)
    y = targets(fw["idx"], Y, Z.shape[-1])  # (n, T)
    return cross_entropy(Z.reshape(-1, Z.shape[-1]), y.reshape(-1))  # ()  logsumexp: stable


def gradients(params: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
    """dL/d(each parameter) by `loss(...).backward()`."""
    return loss_and_gradients(loss, params, X, Y)[1]


def indices(params: Params, X: Any) -> np.ndarray:
    """X as int64 character indices, or one error: X must be (n, T) whole numbers in [0, V) (`layers.inputs`).

    Shapes::  X (n, T) float, Epos (T, d), Etok (V, d)  ->  (n, T) int64
    """
    T, V = params["Epos"].shape[0], params["Etok"].shape[0]
    x = X.data if isinstance(X, Tensor) else X
    return window_indices(x, V, T, "transformer", f"T = {T} (the rows of Epos): a window of character indices a row")


def targets(idx: Any, Y: Any, V: int) -> np.ndarray:
    """The character each position predicts: the next one in the window, Y after the last; or one error.

    Shapes::  idx (n, T) int64, Y (n,) int  ->  (n, T) int64,  y_it = idx_{i,t+1} (t < T - 1), Y_i (t = T - 1)
    """
    y = Y.data if isinstance(Y, Tensor) else np.asarray(Y)
    if y.ndim != 1 or y.shape[0] != idx.shape[0]:
        raise DataError(
            f"transformer: Y must be 1-D (n,) with n = {idx.shape[0]}, the rows of X; got shape {tuple(y.shape)}"
        )
    bad = (y != np.floor(y)) | (y < 0) | (y >= V) if y.dtype.kind == "f" else (y < 0) | (y >= V)
    if bool(np.any(bad)):
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"transformer: Y must hold character indices in [0, V) with V = {V}; got {y[i].item()!r} at row {i}"
        )
    return np.concatenate([idx[:, 1:], y.astype(np.int64)[:, None]], axis=1)  # (n, T)
