"""The article's model, 1-D linear regression, with gradients from gradtwin's own autodiff."""

from __future__ import annotations

from typing import Any

from gradtwin.autodiff import Tensor, ops, tap
from gradtwin.tape.backward import loss_and_gradients

Params = dict[str, Tensor]


def predict(params: Params, X: Any) -> Tensor:
    """pred = X*w + b.   Shapes::  X (n,), w (), b ()  ->  pred (n,)"""
    return X * params["w"] + params["b"]


def loss(params: Params, X: Any, Y: Any) -> Tensor:
    """Mean squared error.   Loss::  L = 1/n * sum_i (X_i w + b - Y_i)^2   ->  ()"""
    residual = tap("pred", predict(params, X)) - Y  # (n,)
    return ops.mean(residual * residual)  # ()


def gradients(params: dict[str, Any], X: Any, Y: Any) -> dict[str, Any]:
    """dL/dw and dL/db by `loss(...).backward()`.   Shapes::  -> dw (), db ()"""
    return loss_and_gradients(loss, params, X, Y)[1]
