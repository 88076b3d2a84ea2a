"""Multivariate linear regression, pred = X @ w + b with mean squared error, by PyTorch autograd.

The forward pass is two graph nodes, `addmv` and `mse_loss`, so a backward pass is two
nodes as well: as few as this model allows.
"""

from __future__ import annotations

import torch

from gradtwin.autograd._backward import loss_and_gradients

Params = dict[str, torch.Tensor]


def predict(params: Params, X: torch.Tensor) -> torch.Tensor:
    """pred = X @ w + b.   Shapes::  X (n, d), w (d,), b ()  ->  pred (n,)"""
    return torch.addmv(params["b"], X, params["w"])


def loss(params: Params, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean squared error.   Loss::  L = 1/n * sum_i (X_i . w + b - Y_i)^2   ->  ()"""
    return torch.nn.functional.mse_loss(predict(params, X), Y)  # ()


def gradients(params: Params, X: torch.Tensor, Y: torch.Tensor) -> Params:
    """dL/dw and dL/db by `loss(...).backward()`.   Shapes::  -> dw (d,), db ()"""
    return loss_and_gradients(loss, params, X, Y)[1]
