"""Multivariate linear regression, pred = X @ w + b with mean squared error, by gradtwin's own autodiff.

The forward pass is four graph nodes (matmul, add, sub, mul) and a mean. With `weight` v (n,)
the loss is the weighted mean sum_i v_i l_i / sum_i v_i, as in the manual twin.
"""

from __future__ import annotations

import functools
from typing import Any

from gradtwin.autodiff import Tensor, ops, tap
from gradtwin.tape.backward import loss_and_gradients

Params = dict[str, Tensor]


def predict(params: Params, X: Any) -> Tensor:
    """pred = X @ w + b.   Shapes::  X (n, d), w (d,), b ()  ->  pred (n,)"""
    return X @ params["w"] + params["b"]


def loss(params: Params, X: Any, Y: Any, weight: Any = None) -> Tensor:
    """Mean squared error.   Loss::  L = 1/n * sum_i (X_i . w + b - Y_i)^2   ->  ()

    Weighted::  L = sum_i v_i (X_i . w + b - Y_i)^2 / sum_i v_i
    """
    pred = tap("pred", predict(params, X))  # (n,)
    residual = pred - Y  # (n,)
    if weight is None:
        return ops.mean(residual**2)  # ()
    return ops.sum(weight * residual**2) / ops.sum(weight)  # ()


def gradients(params: dict[str, Any], X: Any, Y: Any, weight: Any = None) -> dict[str, Any]:
    """dL/dw and dL/db by `loss(...).backward()`.   Shapes::  -> dw (d,), db ()"""
    return loss_and_gradients(functools.partial(loss, weight=weight), params, X, Y)[1]
