"""A network with one hidden layer and a softmax output, with gradients from PyTorch autograd."""

from __future__ import annotations

import torch

from gradtwin.autograd.backward import loss_and_gradients
from gradtwin.autograd.softmax import cross_entropy

Params = dict[str, torch.Tensor]
ACTIVATIONS = ("tanh", "relu", "sigmoid")


def forward(
    params: Params, X: torch.Tensor, activation: str = "tanh"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A, H and Z.   Shapes::  X (n, d), W1 (d, h), b1 (h,), W2 (h, k), b2 (k,)  ->  (n, h), (n, h), (n, k)"""
    A = X @ params["W1"] + params["b1"]  # (n, h)
    H = activate(A, activation)  # (n, h)
    Z = H @ params["W2"] + params["b2"]  # (n, k)
    return A, H, Z


def predict(params: Params, X: torch.Tensor, activation: str = "tanh") -> torch.Tensor:
    """Class labels: the index of the largest logit.   Shapes::  X (n, d) -> (n,) int64"""
    return torch.argmax(forward(params, X, activation)[2], dim=1)


def loss(params: Params, X: torch.Tensor, Y: torch.Tensor, activation: str = "tanh") -> torch.Tensor:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i (logsumexp_c Z_ic - Z_{i,Y_i})   ->  ()"""
    return cross_entropy(forward(params, X, activation)[2], Y)


def gradients(params: Params, X: torch.Tensor, Y: torch.Tensor, activation: str = "tanh") -> Params:
    """dL/dW1, dL/db1, dL/dW2, dL/db2 by `loss(...).backward()`."""
    return loss_and_gradients(lambda p, x, y: loss(p, x, y, activation), params, X, Y)[1]


def activate(A: torch.Tensor, activation: str) -> torch.Tensor:
    """H = tanh(A), max(A, 0) or 1 / (1 + e^-A).   Shapes::  (n, h) -> (n, h)"""
    if activation == "tanh":
        return torch.tanh(A)
    if activation == "relu":
        return torch.relu(A)
    if activation == "sigmoid":
        return torch.sigmoid(A)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
