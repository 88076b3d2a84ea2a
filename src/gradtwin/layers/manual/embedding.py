"""Embedding lookup, out = W[X]: row X_m of the table for each integer index, derived by hand.

`xp` is the array namespace of W (NumPy, or torch tensors without autograd). X holds integer
indices of any shape; an index that appears k times hands its row k upstream gradients, which
accumulate (a scatter-add, never an assignment).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, is_numpy_array

from gradtwin.layers.inputs import embedding_indices

Params = dict[str, Any]


def forward(params: Params, X: Any) -> Any:
    """out = W[X].   Shapes::  W (V, d), X (...) integers in [0, V)  ->  out (..., d)"""
    W = params["W"]
    embedding_indices(X, W.shape[0])
    xp = array_namespace(W)
    flat = xp.take(W, xp.reshape(xp.asarray(X, device=device(W)), (-1,)), axis=0)  # (M, d), M = X.size
    return xp.reshape(flat, (*X.shape, W.shape[1]))  # (..., d)


def backward(params: Params, X: Any, dout: Any) -> Params:
    """dL/dW: each row of W gets the sum of the upstream gradients at every position that looked it up.

    Forward::  out_m = W[X_m]                      (m runs over the M = X.size positions)
    Chain::    dout_m/dW_v = [X_m == v]            (the lookup is a one-hot row times W)
               dL/dW_v = sum_{m : X_m = v} dL/dout_m = (onehot(X).T @ dL/dout)_v
    Shapes::   W (V, d), X (...), dout (..., d)  ->  dW (V, d)
    """
    W = params["W"]
    embedding_indices(X, W.shape[0])
    xp = array_namespace(W)
    V, d = W.shape
    idx = xp.reshape(xp.asarray(X, device=device(W)), (-1,))  # (M,)
    rows = xp.reshape(dout, (-1, d))  # (M, d)  dL/dout_m, one row per position
    dW = xp.zeros((V, d), dtype=W.dtype, device=device(W))  # (V, d)
    _add_at(dW, idx, rows)  # (V, d)  dW[idx[m]] += rows[m]: repeated indices accumulate
    return {"W": dW}


def _add_at(target: Any, idx: Any, rows: Any) -> None:
    """target[idx[m]] += rows[m] for every m, repeats included (np.add.at; torch's index_add_)."""
    if is_numpy_array(target):
        np.add.at(target, idx, rows)
    else:
        target.index_add_(0, idx, rows)
