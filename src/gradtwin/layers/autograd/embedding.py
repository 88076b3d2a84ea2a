"""Embedding lookup, out = W[X], by PyTorch autograd: F.embedding is the reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gradtwin.layers.inputs import embedding_indices

Params = dict[str, torch.Tensor]


def forward(params: Params, X: torch.Tensor) -> torch.Tensor:
    """out = W[X].   Shapes::  W (V, d), X (...) integers in [0, V)  ->  out (..., d)"""
    W = params["W"]
    embedding_indices(X, W.shape[0])
    return F.embedding(torch.as_tensor(X, device=W.device), W)


def backward(params: Params, X: torch.Tensor, dout: torch.Tensor) -> Params:
    """dL/dW by autograd's vector-Jacobian product of forward with dout.   Shapes::  -> dW (V, d)"""
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    out = forward(leaves, X)
    grads = torch.autograd.grad(out, list(leaves.values()), dout)
    return dict(zip(leaves, grads, strict=True))
