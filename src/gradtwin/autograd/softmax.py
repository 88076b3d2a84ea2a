"""Multinomial (k-class) logistic regression, mean cross-entropy, with gradients from PyTorch autograd."""

from __future__ import annotations

import torch

from gradtwin.autograd._backward import loss_and_gradients

Params = dict[str, torch.Tensor]


def logits(params: Params, X: torch.Tensor) -> torch.Tensor:
    """Z = X @ W + b.   Shapes::  X (n, d), W (d, k), b (k,)  ->  Z (n, k)"""
    return X @ params["W"] + params["b"]


def predict(params: Params, X: torch.Tensor) -> torch.Tensor:
    """Class labels: the index of the largest logit.   Shapes::  X (n, d) -> (n,) int64"""
    return torch.argmax(logits(params, X), dim=1)


def loss(params: Params, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy.   Loss::  L = 1/n * sum_i (logsumexp_c Z_ic - Z_{i,Y_i})   ->  ()"""
    return cross_entropy(logits(params, X), Y)


def gradients(params: Params, X: torch.Tensor, Y: torch.Tensor) -> Params:
    """dL/dW and dL/db by `loss(...).backward()`.   Shapes::  -> dW (d, k), db (k,)"""
    return loss_and_gradients(loss, params, X, Y)[1]


def cross_entropy(Z: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """1/n * sum_i (lse_i - Z_{i,Y_i}); Y must be int64 to index.   Shapes::  Z (n, k), Y (n,) -> ()"""
    picked = Z.gather(1, Y[:, None])[:, 0]  # (n,)
    return torch.mean(torch.logsumexp(Z, dim=1) - picked)
