"""A network with one hidden layer and a softmax output, with gradients from PyTorch autograd."""

from __future__ import annotations

import torch

from gradtwin.autograd.backward import loss_and_gradients
from gradtwin.autograd.softmax import cross_entropy
from gradtwin.steps.tap import tap

Params = dict[str, torch.Tensor]
ACTIVATIONS = ("tanh", "relu", "sigmoid")


def forward(
    params: Params, X: torch.Tensor, activation: str = "tanh"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Z1, H and Z2.   Shapes::  X (n, d), W1 (d, h), b1 (h,), W2 (h, k), b2 (k,)  ->  (n, h), (n, h), (n, k)"""
    Z1 = tap("Z1", torch.addmm(params["b1"], X, params["W1"]))  # (n, h)
    H = tap("H", activate(Z1, activation))  # (n, h)
    Z2 = tap("Z2", torch.addmm(params["b2"], H, params["W2"]))  # (n, k)
    return Z1, H, Z2


def predict(params: Params, X: torch.Tensor, activation: str = "tanh") -> torch.Tensor:
    """Class labels: the index of the largest logit.   Shapes::  X (n, d) -> (n,) int64"""
    return torch.argmax(forward(params, X, activation)[2], dim=1)


def loss(params: Params, X: torch.Tensor, Y: torch.Tensor, activation: str = "tanh") -> torch.Tensor:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i (logsumexp_c Z2_ic - Z2_{i,Y_i})   ->  ()"""
    return cross_entropy(forward(params, X, activation)[2], Y)


def gradients(params: Params, X: torch.Tensor, Y: torch.Tensor, activation: str = "tanh") -> Params:
    """dL/dW1, dL/db1, dL/dW2, dL/db2 by `loss(...).backward()`."""
    return loss_and_gradients(lambda p, x, y: loss(p, x, y, activation), params, X, Y)[1]


def activate(Z1: torch.Tensor, activation: str) -> torch.Tensor:
    """H = tanh(Z1), max(Z1, 0) or 1 / (1 + e^-Z1).   Shapes::  (n, h) -> (n, h)"""
    if activation == "tanh":
        return torch.tanh(Z1)
    if activation == "relu":
        return torch.relu(Z1)
    if activation == "sigmoid":
        return torch.sigmoid(Z1)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
