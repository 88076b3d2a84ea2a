"""Binary logistic regression, mean cross-entropy from the logits, with gradients from PyTorch autograd.

With `weight` v (n,) the loss is the weighted mean sum_i v_i l_i / sum_i v_i, as in the manual twin.
"""

from __future__ import annotations

import functools

import torch

from gradtwin.autograd.backward import loss_and_gradients
from gradtwin.steps.tap import tap

Params = dict[str, torch.Tensor]


def logits(params: Params, X: torch.Tensor) -> torch.Tensor:
    """z = X @ w + b.   Shapes::  X (n, d), w (d,), b ()  ->  z (n,)"""
    return torch.addmv(params["b"], X, params["w"])  # one graph node


def predict(params: Params, X: torch.Tensor) -> torch.Tensor:
    """Class labels: 1 where z > 0 (sigma(z) > 1/2), else 0.   Shapes::  X (n, d) -> (n,) int64"""
    return (logits(params, X) > 0).to(torch.int64)


def loss(params: Params, X: torch.Tensor, Y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i softplus(s_i * z_i),  s_i = 1 - 2 Y_i   ->  ()

    Weighted::  L = sum_i v_i softplus(s_i * z_i) / sum_i v_i
    """
    z = tap("z", logits(params, X))  # (n,)
    s = Y.to(z.dtype, copy=True).mul_(-2.0).add_(1.0)  # (n,) 1 - 2Y: +1 or -1, exact, in one fresh buffer
    # F.softplus is one graph node. It returns t itself above its threshold; at t > 40 that is log(1 + e^t)
    # correctly rounded in float32 and float64 (e^-40 = 4e-18 is below half an ulp of 40), and at t <= 40
    # e^t cannot overflow: finite and accurate for any logit, 1e30 included. (The default threshold, 20,
    # is 2e-9 off in float64; BCE-with-logits cancels digits when it forms y - sigma(z).)
    terms = torch.nn.functional.softplus(s * z, threshold=40.0)  # (n,)
    if weight is None:
        return torch.mean(terms)  # ()
    return torch.dot(weight, terms) / torch.sum(weight)  # ()


def gradients(params: Params, X: torch.Tensor, Y: torch.Tensor, weight: torch.Tensor | None = None) -> Params:
    """dL/dw and dL/db by `loss(...).backward()`.   Shapes::  -> dw (d,), db ()"""
    return loss_and_gradients(functools.partial(loss, weight=weight), params, X, Y)[1]
