"""A network with one hidden layer and a softmax output, with gradients from gradtwin's own autodiff."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradtwin.autodiff import Tensor, ops, tap
from gradtwin.tape.backward import loss_and_gradients
from gradtwin.tape.softmax import cross_entropy

Params = dict[str, Tensor]
ACTIVATIONS = ("tanh", "relu", "sigmoid")


def forward(params: Params, X: Any, activation: str = "tanh") -> tuple[Tensor, Tensor, Tensor]:
    """Z1, H and Z2.   Shapes::  X (n, d), W1 (d, h), b1 (h,), W2 (h, k), b2 (k,)  ->  (n, h), (n, h), (n, k)"""
    Z1 = tap("Z1", X @ params["W1"] + params["b1"])  # (n, h)
    H = tap("H", activate(Z1, activation))  # (n, h)
    Z2 = tap("Z2", H @ params["W2"] + params["b2"])  # (n, k)
    return Z1, H, Z2


def predict(params: Params, X: Any, activation: str = "tanh") -> np.ndarray:
    """Class labels: the index of the largest logit.   Shapes::  X (n, d) -> (n,) int64"""
    return np.argmax(forward(params, X, activation)[2].data, axis=1).astype(np.int64)


def loss(params: Params, X: Any, Y: Any, activation: str = "tanh") -> Tensor:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i (logsumexp_c Z2_ic - Z2_{i,Y_i})   ->  ()"""
    return cross_entropy(forward(params, X, activation)[2], Y)


def gradients(params: dict[str, Any], X: Any, Y: Any, activation: str = "tanh") -> dict[str, Any]:
    """dL/dW1, dL/db1, dL/dW2, dL/db2 by `loss(...).backward()`."""
    return loss_and_gradients(lambda p, x, y: loss(p, x, y, activation), params, X, Y)[1]


def activate(Z1: Tensor, activation: str) -> Tensor:
    """H = tanh(Z1), max(Z1, 0) or 1 / (1 + e^-Z1).   Shapes::  (n, h) -> (n, h)"""
    if activation == "tanh":
        return ops.tanh(Z1)
    if activation == "relu":
        return ops.relu(Z1)
    if activation == "sigmoid":
        return ops.sigmoid(Z1)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
