"""Binary logistic regression, mean cross-entropy from the logits, with gradients from PyTorch autograd.

With `weight` v (n,) the loss is the weighted mean sum_i v_i l_i / sum_i v_i, as in the manual twin.
"""

from __future__ import annotations

import functools

import torch

from gradtwin.autograd.backward import loss_and_gradients

Params = dict[str, torch.Tensor]


def logits(params: Params, X: torch.Tensor) -> torch.Tensor:
    """z = X @ w + b.   Shapes::  X (n, d), w (d,), b ()  ->  z (n,)"""
    return X @ params["w"] + params["b"]


def predict(params: Params, X: torch.Tensor) -> torch.Tensor:
    """Class labels: 1 where z > 0 (sigma(z) > 1/2), else 0.   Shapes::  X (n, d) -> (n,) int64"""
    return (logits(params, X) > 0).to(torch.int64)


def loss(params: Params, X: torch.Tensor, Y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i softplus(s_i * z_i),  s_i = 1 - 2 Y_i   ->  ()

    Weighted::  L = sum_i v_i softplus(s_i * z_i) / sum_i v_i
    """
    z = logits(params, X)  # (n,)
    s = 1.0 - 2.0 * Y.to(z.dtype)  # (n,) +1 or -1, exact
    # not F.softplus: above t = 20 it returns t itself, 2e-9 away from log(1 + e^t)
    terms = torch.logaddexp(torch.zeros_like(z), s * z)  # (n,)
    if weight is None:
        return torch.mean(terms)  # ()
    return torch.sum(weight * terms) / torch.sum(weight)  # ()


def gradients(params: Params, X: torch.Tensor, Y: torch.Tensor, weight: torch.Tensor | None = None) -> Params:
    """dL/dw and dL/db by `loss(...).backward()`.   Shapes::  -> dw (d,), db ()"""
    return loss_and_gradients(functools.partial(loss, weight=weight), params, X, Y)[1]
