"""Multinomial (k-class) logistic regression, mean cross-entropy, with gradients from PyTorch autograd.

With `weight` v (n,) the loss is the weighted mean sum_i v_i l_i / sum_i v_i, as in the manual twin.
"""

from __future__ import annotations

import functools

import torch

from gradtwin.autograd.backward import loss_and_gradients
from gradtwin.steps.tap import tap

Params = dict[str, torch.Tensor]


def logits(params: Params, X: torch.Tensor) -> torch.Tensor:
    """Z = X @ W + b.   Shapes::  X (n, d), W (d, k), b (k,)  ->  Z (n, k)"""
    return torch.addmm(params["b"], X, params["W"])  # one graph node


def predict(params: Params, X: torch.Tensor) -> torch.Tensor:
    """Class labels: the index of the largest logit.   Shapes::  X (n, d) -> (n,) int64"""
    return torch.argmax(logits(params, X), dim=1)


def loss(params: Params, X: torch.Tensor, Y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i (logsumexp_c Z_ic - Z_{i,Y_i})   ->  ()"""
    return cross_entropy(tap("Z", logits(params, X)), Y, weight)


def gradients(params: Params, X: torch.Tensor, Y: torch.Tensor, weight: torch.Tensor | None = None) -> Params:
    """dL/dW and dL/db by `loss(...).backward()`.   Shapes::  -> dW (d, k), db (k,)"""
    return loss_and_gradients(functools.partial(loss, weight=weight), params, X, Y)[1]


def cross_entropy(Z: torch.Tensor, Y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """1/n * sum_i (lse_i - Z_{i,Y_i}), or sum_i v_i (...) / sum_i v_i; Y must be int64 to index.

    Shapes::  Z (n, k), Y (n,), v (n,) -> ()
    """
    # F.cross_entropy is log_softmax + nll_loss: two graph nodes, stable at any logit (max subtracted)
    if weight is None:
        return torch.nn.functional.cross_entropy(Z, Y)  # ()
    terms = torch.nn.functional.cross_entropy(Z, Y, reduction="none")  # (n,) lse_i - Z_{i,Y_i}
    return torch.dot(weight, terms) / torch.sum(weight)  # ()
