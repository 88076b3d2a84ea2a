"""The article's model, 1-D linear regression, with gradients from PyTorch autograd."""

from __future__ import annotations

import torch

from gradtwin.autograd.backward import loss_and_gradients
from gradtwin.steps.tap import tap

Params = dict[str, torch.Tensor]


def predict(params: Params, X: torch.Tensor) -> torch.Tensor:
    """pred = X*w + b.   Shapes::  X (n,), w (), b ()  ->  pred (n,)"""
    return X * params["w"] + params["b"]


def loss(params: Params, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean squared error.   Loss::  L = 1/n * sum_i (X_i w + b - Y_i)^2   ->  ()"""
    residual = tap("pred", predict(params, X)) - Y  # (n,)
    return torch.mean(residual * residual)  # ()


def gradients(params: Params, X: torch.Tensor, Y: torch.Tensor) -> Params:
    """dL/dw and dL/db by `loss(...).backward()`.   Shapes::  -> dw (), db ()"""
    return loss_and_gradients(loss, params, X, Y)[1]
