"""A character-level language model (the "makemore" MLP), with gradients from gradtwin's own autodiff.

The network of the manual twin: an embedding of the `context` previous characters (`ops.take`, whose
backward adds the gradients of repeated characters), concatenation, a linear layer without bias,
batch normalisation with the batch's own mean and biased variance written in the engine's ops, tanh,
a linear output and the mean cross-entropy of the next character.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradtwin.autodiff import Tensor, ops, tap
from gradtwin.layers.inputs import batch_rows, window_indices
from gradtwin.tape.backward import loss_and_gradients
from gradtwin.tape.softmax import cross_entropy

Params = dict[str, Tensor]
EPS = 1e-5  # added to the variance before the square root: batch norm's, as torch's default and the manual twin's
Stats = tuple[Any, Any] | None  # (mu (h,), var (h,)) fixed batch-norm statistics, or None: the batch's own


def indices(params: Params, X: Any) -> np.ndarray:
    """X as int64 character indices, or one error naming what does not fit (`layers.inputs.window_indices`).

    X must be (n, context) with context * e = the rows of W1, whole numbers in [0, V).
    Shapes::  X (n, context) float -> (n, context) int64
    """
    e, rows = params["C"].shape[1], params["W1"].shape[0]
    why = f"context = {rows // e} characters (W1 has {rows} rows, {e} per character)"
    return window_indices(X.data if isinstance(X, Tensor) else X, params["C"].shape[0], rows // e, "charmlp", why)


def forward(params: Params, X: Any, stats: Stats = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Emb, Ecat, Z1, Zbn, H and Z2 (the logits); batch norm uses `stats` = (mu, var) if given (sampling).

    Forward:: Zbn = gamma * (Z1 - mu) / sqrt(var + eps) + beta,  mu, var = mean and biased variance of Z1's rows
    Shapes::  X (n, t), C (V, e), W1 (t*e, h), gamma (h,), beta (h,), W2 (h, V), b2 (V,)
              ->  (n, t, e), (n, t*e), (n, h), (n, h), (n, h), (n, V)
    """
    Xi = indices(params, X)  # (n, t) int64
    Emb = tap("Emb", ops.take(params["C"], Xi))  # (n, t, e)  repeated characters add their gradients
    Ecat = tap("Ecat", Emb.reshape(Emb.shape[0], -1))  # (n, t*e)
    Z1 = tap("Z1", Ecat @ params["W1"])  # (n, h)
    if stats is None:
        batch_rows(Z1)  # n >= 2, as F.batch_norm requires in training
        mu = Z1.mean(axis=0)  # (h,)
        Zc = Z1 - mu  # (n, h)
        var = (Zc * Zc).mean(axis=0)  # (h,)  biased: 1/n
    else:
        mu, var = stats  # (h,), (h,) constants
        Zc = Z1 - mu  # (n, h)
    Zbn = tap("Zbn", params["gamma"] * (Zc / (var + EPS) ** 0.5) + params["beta"])  # (n, h)
    H = tap("H", ops.tanh(Zbn))  # (n, h)
    Z2 = tap("Z2", H @ params["W2"] + params["b2"])  # (n, V)
    return Emb, Ecat, Z1, Zbn, H, Z2


def predict(params: Params, X: Any) -> np.ndarray:
    """The most likely next character (batch statistics of X).   Shapes::  X (n, t) -> (n,) int64"""
    return np.argmax(forward(params, X)[5].data, axis=1).astype(np.int64)


def loss(params: Params, X: Any, Y: Any) -> Tensor:
    """Mean cross-entropy of the next character.   Loss::  L = 1/n * sum_i (logsumexp_c Z2_ic - Z2_{i,Y_i})  -> ()"""
    return cross_entropy(forward(params, X)[5], Y)


def gradients(params: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
    """dL/dC, dL/dW1, dL/dgamma, dL/dbeta, dL/dW2, dL/db2 by `loss(...).backward()`."""
    return loss_and_gradients(loss, params, X, Y)[1]


def statistics(params: Params, X: Any) -> tuple[np.ndarray, np.ndarray]:
    """The batch-norm statistics of X: mean and biased variance of Z1 over the rows.   Shapes::  -> (h,), (h,)"""
    Z1 = forward(params, X)[2].data  # (n, h)
    mu = Z1.mean(axis=0)  # (h,)
    Zc = Z1 - mu  # (n, h)
    return mu, (Zc * Zc).mean(axis=0)  # (h,), (h,)  biased: 1/n, as batch norm's training mode
