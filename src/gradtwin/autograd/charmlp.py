"""A character-level language model (the "makemore" MLP), with gradients from PyTorch autograd."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradtwin.autograd.backward import loss_and_gradients
from gradtwin.autograd.softmax import cross_entropy
from gradtwin.layers.autograd import batchnorm
from gradtwin.layers.inputs import window_indices
from gradtwin.steps.tap import tap

Params = dict[str, torch.Tensor]
EPS = batchnorm.EPS  # added to the variance before the square root, as torch's default
Stats = tuple[torch.Tensor, torch.Tensor] | None  # (mu (h,), var (h,)) fixed batch-norm statistics, or None


def indices(params: Params, X: torch.Tensor) -> torch.Tensor:
    """X as int64 character indices, or one error naming what does not fit (`layers.inputs.window_indices`).

    Shapes::  X (n, context) float -> (n, context) int64
    """
    e, rows = params["C"].shape[1], params["W1"].shape[0]
    why = f"context = {rows // e} characters (W1 has {rows} rows, {e} per character)"
    return window_indices(X, params["C"].shape[0], rows // e, "charmlp", why)


def forward(
    params: Params, X: torch.Tensor, stats: Stats = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Emb, Ecat, Z1, Zbn, H and Z2 (the logits); batch norm uses `stats` = (mu, var) if given (sampling).

    Shapes::  X (n, t), C (V, e), W1 (t*e, h), gamma (h,), beta (h,), W2 (h, V), b2 (V,)
              ->  (n, t, e), (n, t*e), (n, h), (n, h), (n, h), (n, V)
    """
    Xi = indices(params, X)  # (n, t) int64, checked as the manual twin checks it
    Emb = tap("Emb", F.embedding(Xi, params["C"]))  # (n, t, e)
    Ecat = tap("Ecat", Emb.reshape(Emb.shape[0], -1))  # (n, t*e)
    Z1 = tap("Z1", Ecat @ params["W1"])  # (n, h)
    norm = {"gamma": params["gamma"], "beta": params["beta"]}
    if stats is None:
        Zbn = tap("Zbn", batchnorm.forward(norm, Z1))  # (n, h)  F.batch_norm(training=True), n >= 2 checked
    else:
        mu, var = stats  # (h,), (h,)
        Zbn = tap("Zbn", F.batch_norm(Z1, mu, var, weight=norm["gamma"], bias=norm["beta"], eps=EPS))  # (n, h)
    H = tap("H", torch.tanh(Zbn))  # (n, h)
    Z2 = tap("Z2", torch.addmm(params["b2"], H, params["W2"]))  # (n, V)
    return Emb, Ecat, Z1, Zbn, H, Z2


def predict(params: Params, X: torch.Tensor) -> torch.Tensor:
    """The most likely next character (batch statistics of X).   Shapes::  X (n, t) -> (n,) int64"""
    return torch.argmax(forward(params, X)[5], dim=1)


def loss(params: Params, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the next character.   Loss::  L = 1/n * sum_i (logsumexp_c Z2_ic - Z2_{i,Y_i})  -> ()"""
    return cross_entropy(forward(params, X)[5], Y)


def gradients(params: Params, X: torch.Tensor, Y: torch.Tensor) -> Params:
    """dL/dC, dL/dW1, dL/dgamma, dL/dbeta, dL/dW2, dL/db2 by `loss(...).backward()`."""
    return loss_and_gradients(loss, params, X, Y)[1]


def statistics(params: Params, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch-norm statistics of X: mean and biased variance of Z1 over the rows.   Shapes::  -> (h,), (h,)"""
    Z1 = forward(params, X)[2]  # (n, h)
    return Z1.mean(dim=0), Z1.var(dim=0, unbiased=False)  # (h,), (h,)
