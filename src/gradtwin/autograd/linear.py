"""Multivariate linear regression, pred = X @ w + b with mean squared error, by PyTorch autograd.

The forward pass is two graph nodes, `addmv` and `mse_loss`, so a backward pass is two
nodes as well: as few as this model allows. With `weight` v (n,) the loss is the weighted
mean sum_i v_i l_i / sum_i v_i, as in the manual twin.
"""

from __future__ import annotations

import functools

import torch

from gradtwin.autograd.backward import loss_and_gradients
from gradtwin.steps.tap import tap

Params = dict[str, torch.Tensor]


def predict(params: Params, X: torch.Tensor) -> torch.Tensor:
    """pred = X @ w + b.   Shapes::  X (n, d), w (d,), b ()  ->  pred (n,)"""
    return torch.addmv(params["b"], X, params["w"])


def loss(params: Params, X: torch.Tensor, Y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error.   Loss::  L = 1/n * sum_i (X_i . w + b - Y_i)^2   ->  ()

    Weighted::  L = sum_i v_i (X_i . w + b - Y_i)^2 / sum_i v_i
    """
    pred = tap("pred", predict(params, X))  # (n,)
    if weight is None:
        return torch.nn.functional.mse_loss(pred, Y)  # ()
    residual = pred - Y  # (n,)
    return torch.sum(weight * residual**2) / torch.sum(weight)  # ()


def gradients(params: Params, X: torch.Tensor, Y: torch.Tensor, weight: torch.Tensor | None = None) -> Params:
    """dL/dw and dL/db by `loss(...).backward()`.   Shapes::  -> dw (d,), db ()"""
    return loss_and_gradients(functools.partial(loss, weight=weight), params, X, Y)[1]
